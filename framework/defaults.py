"""Named defaults. Code and docs refer to these names, never to bare numbers."""

from __future__ import annotations

CONFIG_PATH = "config/queues.toml"
"""Where the configuration is read from when ``HUEYARD_CONFIG`` is not set."""

REDIS_URL = "redis://localhost:6379/0"
"""The Redis server used when neither the file nor the environment names one."""

KEY_PREFIX = "hueyard"
"""Prefix (and Redis Cluster hash tag) of every key one app writes."""

ATTEMPTS = 3
"""Attempts per job, the first run included (Bull's ``attempts``)."""

BACKOFF_DELAY = 5.0
"""Seconds before the first retry; exponential backoff doubles it each time."""

KEEP_COMPLETED = 100
"""Completed jobs kept per queue (Bull's ``removeOnComplete: 100``)."""

KEEP_FAILED = 500
"""Failed jobs kept per queue (Bull's ``removeOnFail: 500``)."""

PRIORITY = 5
"""Default priority: 1 runs first, 10 last (Bull's convention)."""

PRIORITY_HIGHEST = 1
PRIORITY_LOWEST = 10

CANCELLED = "cancelled"
"""The error of a job that was cancelled (``hueyard cancel``, the dashboard)."""

MAX_ATTEMPTS = 100
"""The most attempts a queue or a job may ask for."""

MAX_TIMEOUT = 7 * 86400.0
"""Longest timeout (seconds) a queue or a job may set."""

MAX_KEY_LENGTH = 256
"""Characters of a job key (``enqueue(key=...)``) at most."""

MAX_DELAY = 366 * 86400.0
"""Longest ``delay=`` (seconds) an enqueue accepts; an ``eta`` may be at most this far ahead."""

MAX_KEEP = 1_000_000
"""Most finished jobs a queue or a job may keep (``keep_completed``, ``keep_failed``)."""

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Bytes a payload may take as JSON (``max_payload_bytes``, 1 MiB): a larger one is refused
at enqueue. Big data belongs elsewhere (object storage, a table); pass its reference."""

MIN_PAYLOAD_LIMIT = 1024
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024
"""The range ``max_payload_bytes`` may be set to: 1 KiB to 64 MiB."""

MAX_PAYLOAD_DEPTH = 64
"""Levels of JSON nesting a payload may have (``{"a": [1]}`` has two). A deeper one is
refused at enqueue; stored JSON that nests deeper is shown as text, never walked."""

SEQ_SPAN = 2**40
"""Enqueue sequence numbers per priority: a waiting job's score is ``priority x SEQ_SPAN + seq``."""

WAKE_MAX = 64
"""Wake tokens a queue keeps for idle workers; the list is cut back to this past twice as many."""

MAX_SAMPLES = 256
"""Processing-time samples kept per queue and minute (for p50 / p95): the newest
``MAX_SAMPLES``, the list cut back to them when it passes twice as many."""

# -- chains and fan-in (framework/chains.py, framework/fanin.py) ------------------------------

MAX_CHAIN = 16
"""Follow-ups one job may carry (``handler.s(p).then(a).then(b)``: two); a longer chain is
refused at enqueue."""

MAX_CHAIN_BYTES = 64 * 1024
"""Bytes the follow-ups of one job may take as JSON (handlers, their fixed payloads and
options): the ``then`` field of its record."""

MAX_CHILDREN = 1_000_000
"""Children one parent may wait for (``current_job().spawn_many``); more are refused."""

CHILD_BAND = 2**42
"""Score bands of a parent's children set: pending, completed, failed are this far apart
(each child's score is its band plus the time, in ms, it got there)."""

CHILD_LINKS_KEPT = 100
"""Children a finished parent keeps links to (failed ones first, then completed ones);
its counts stay whole."""

OUTBOX_MAX = 1_000_000
"""Notices a queue's outbox holds at most (children's outcomes and follow-ups not yet
delivered); it fills only while their queues do not answer. Past it the oldest go."""

DELIVER_BATCH = 1000
"""Outbox notices one recovery pass delivers per queue at most."""

FOLLOW_UP_KEY_TTL = 86400.0
"""Seconds a follow-up's job key (``then:<queue>:<id>``) stays taken after it finished: a
notice delivered again within it enqueues nothing."""

MAX_CONNECTIONS = 64
"""Connections a pool may open when nothing sized it (a client built without an app)."""

POOL_SPARE = 16
"""Connections of an app's pool beyond one per worker thread and one per queue: the
scheduler's, the lease keeper's, the main thread's, the read API's, the cache's."""

POOL_TIMEOUT = 10.0
"""Seconds a caller waits for a free connection of a full pool before it fails."""

SENTINEL_RECHECK = 1.0
"""Seconds between two questions to Sentinel about the master, from one busy process: a
connection to a master that Sentinel replaced moves to the new one within this long."""

UNSURE_CLAIMS = 1000
"""Claim tokens a queue's storage remembers whose call got no reply (newest kept)."""

GIVEBACK_SCAN = 10_000
"""Active jobs ``giveback`` looks at for claims whose reply was lost."""

ABANDON_AFTER = 2.0
"""Seconds a job told to stop (timed out, cancelled) may take before its thread is given up."""

MAX_ABANDONED_THREADS = 8
"""Worker threads a consumer may give up on (stuck outside Python) before it exits."""

CONCURRENCY = 1
"""Workers per queue in one consumer process."""

SHUTDOWN_TIMEOUT = 30.0
"""Seconds a graceful shutdown waits for running jobs (the spec's 30 s)."""

LEASE = 30.0
"""Seconds a claimed job stays ours without renewal; renewed every third of it."""

MAX_STALLS = 1
"""Times a job may lose its consumer (lease expired) before it fails as stalled."""

METRICS_TTL = 25 * 3600
"""Seconds per-minute counts and processing-time samples are kept (over 24 h)."""

MAX_LOG_LINES = 100
"""Log lines kept per job; older lines are dropped."""

# -- what a read takes from Redis at most (framework/peek.py) ---------------------------------

SHORT_FIELD_BYTES = 1024
"""Bytes read of each short field of a job record (handler, key, consumer, numbers, times)."""

LIST_FIELD_BYTES = 4096
"""Bytes read of each payload, result, progress, error and traceback of a job on a page
(``Jobs.list_jobs``): a page of 500 jobs holds at most a few MB, whatever is stored."""

LOG_LINE_BYTES = 4096
"""Bytes read of each log line of a job (``Jobs.get``); the newest ``max_log_lines`` are read."""

SEARCH_BYTES = 16384
"""Bytes of each payload a dashboard search reads and searches (``[dashboard] search_bytes``)."""

MAX_LISTED_CONSUMERS = 1000
"""Consumers ``Jobs.consumers`` lists at most (the heartbeat set holds far fewer)."""

MAX_LISTED_ACTIVE = 10_000
"""Active jobs per queue whose consumer ``Jobs.consumers`` looks up, at most."""

BULK_BATCH = 1000
"""Jobs one bulk script call touches, so no call blocks Redis for long."""

SOCKET_TIMEOUT = 5.0
"""Seconds one Redis operation may take before it counts as failed."""

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to Redis."""

RECONNECT_ATTEMPTS = 10
"""Reconnection tries before an operation gives up (the spec's ``retries > 10``)."""

RECONNECT_STEP = 0.05
"""Backoff grows by this many seconds per failed try (the spec's ``retries * 50`` ms)."""

RECONNECT_CAP = 3.0
"""Longest wait between two reconnection tries (the spec's 3000 ms)."""

CACHE_TTL = 300
"""Seconds a cached value lives when no TTL and no TTL name is given."""
CACHE_TTL_MAX = 30 * 86400
"""The longest cache TTL: 30 days (a longer one is data, not a cache; Redis also refuses
an expiry past what it can count)."""

DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 5000
"""The spec's ``http://localhost:5000/admin/queues``."""

DEFAULT_DASHBOARD_USERNAME = "admin"
DEFAULT_DASHBOARD_PASSWORD = "admin123"  # noqa: S105 - the spec's development default, refused in production
"""The spec's credentials: used only with ``HUEYARD_ENV=development`` and none set."""

MIN_DASHBOARD_PASSWORD_LENGTH = 12
"""Shortest dashboard password accepted outside development."""

MAX_FAILED_LOGINS = 10
"""Failed dashboard sign-ins of one address within ``FAILED_LOGIN_WINDOW`` before a lockout."""

FAILED_LOGIN_WINDOW = 300.0
"""Seconds over which failed sign-ins are counted."""

LOGIN_LOCKOUT = 300.0
"""Seconds an address that failed too often gets 429 (with ``Retry-After``)."""

MAX_THROTTLED_CLIENTS = 10_000
"""Addresses whose failed sign-ins are remembered at once; the least recently seen go first."""

DOCTOR_MEMORY_SHARE = 0.8
"""Share of Redis ``maxmemory`` in use past which ``hueyard doctor`` warns."""

DOCTOR_FAILURE_RATE = 0.1
"""Share of a queue's jobs finished in the last ``[health] failure_window_minutes`` that
failed past which ``hueyard doctor`` warns, when ``[health] max_failure_rate`` is unset."""

MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
"""Bytes a config file (``queues.toml``, a flow, an e-mail template) may hold: it is
read whole at start-up, so ``HUEYARD_CONFIG=/dev/zero`` must be an error, not a 5 GB read."""

SCRIPTS_CHECK_EVERY = 10.0
"""Seconds ``/health`` (and ``/metrics``) keep their answer to "does Redis run scripts?"
(one read-only EVALSHA): a Redis whose EVAL / EVALSHA are renamed refuses every job change."""
