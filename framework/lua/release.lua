-- A worker is done with a job. Only the holder of the claim's token may
-- release it (the token goes with the release). With A.fetch = '1' the same
-- call also takes the worker's next job: one round trip per job on a busy queue.
-- Outcomes (framework.options.Outcome): completed (A.value = the result),
-- failed (A.value = the error), retry (delayed by A.delay_ms; A.value = the
-- error), requeue (interrupted by shutdown: back to waiting, the attempt not counted).
-- A record that turned corrupt while the job ran fails it with the reason.
-- A completed job that still has pending children (framework/fanin.py) waits for
-- them in waiting-children, its result kept; the last child's notice completes
-- it. A.follow_up (JSON, or '') is its follow-up, posted to the outbox when it
-- completes. A job that finishes and names a parent tells it through the outbox.
-- Returns {stored, told, <take() reply>} | {stored, told} without fetch: stored
-- is 1 when the outcome was stored as asked, 2 when the job failed as cancelled
-- instead (its cancel was asked while it ran, and it asked to retry or go back
-- to waiting), 3 when its record turned corrupt and it failed with the reason;
-- told is the notices posted to the outbox | {0} when the caller no longer holds the job
-- (recovered, timed out, removed; a key that is no longer a hash is recover's
-- to file) | an error naming a key of the wrong type, with nothing written.
local job, id = K.job, A.id
local f, kind, reason = read_job(job, {'token', 'cancel'})
if kind ~= 'hash' or f.token ~= A.token then return {0} end
local outcome = A.outcome
local cancelled = f.cancel and (outcome == 'requeue' or outcome == 'retry')

-- Check first: every key this call writes.
local bad
local pending = 0 -- a completed parent's children not finished yet (framework/fanin.py)
if reason or cancelled or outcome == 'failed' then
  bad = wrong_type(K.active, 'zset', K.failed, 'zset', K.outbox, 'zset')
elseif outcome == 'completed' then
  -- A parent's children (its record counts them), read before anything is written:
  -- a set of another type stops the call. A job that spawned none has no set.
  local links = f.children and redis.pcall('ZCOUNT', job .. CHILDREN, 0, CHILD_BAND - 1) or 0
  if type(links) ~= 'number' then
    bad = wrong_type(job .. CHILDREN, 'zset')
  else
    pending = links
    bad = wrong_type(K.active, 'zset', K.completed, 'zset', K.outbox, 'zset')
    if not bad and pending > 0 then bad = wrong_type(K.waiting_children, 'zset') end
  end
elseif outcome == 'retry' then
  bad = wrong_type(K.active, 'zset', K.delayed, 'zset')
else
  bad = wrong_type(K.active, 'zset', K.waiting, 'zset', K.wake, 'list')
end
if not bad and A.fetch == '1' then bad = wrong_take_keys(K.waiting, K.active, K.failed, K.limiter) end
if bad then return bad end

redis.call('ZREM', K.active, id)
local now, precise = clock()
-- The handler's processing time, in the minute's samples (bounded, expires).
local function sample()
  local samples = A.stats_prefix .. math.floor(now / 60000) .. SAMPLES
  local count = redis.pcall('RPUSH', samples, A.duration_ms)
  if count == 1 then
    redis.call('EXPIRE', samples, A.metrics_ttl)
  elseif type(count) == 'number' and count > 2 * MAX_SAMPLES then
    -- cut back once per MAX_SAMPLES pushes, not on each
    redis.call('LTRIM', samples, -MAX_SAMPLES, -1)
  end
end
-- Fields go before fields come: a record that grew past 8 fields for a moment
-- keeps a 16-bucket table (64 bytes more) for as long as Redis keeps it.
if reason then
  quarantine(job, id, K.failed, kind, reason, precise)
elseif cancelled then
  -- cancelled while it ran: it does not run again (a result or a failure is kept)
  fail_job(job, id, K.failed, CANCELLED, f, now, precise)
elseif outcome == 'completed' then
  -- A completed record keeps what it did, not who ran it: the consumer's log line
  -- names each job it completed. A first run's `attempts` (1) goes too: a record
  -- with `started` and without `attempts` ran once (framework/record.py).
  local gone = {'token', 'seq', 'error', 'traceback', 'state', 'finished', 'due', 'cancel',
    'consumer'}
  if f.attempts == '1' then gone[#gone + 1] = 'attempts' end
  redis.call('HDEL', job, unpack(gone))
  redis.call('HSET', job, 'result', A.value)
  sample()
  if pending > 0 then
    -- its children are not all done: it completes with the last one (children.lua)
    if A.follow_up ~= '' then redis.call('HSET', job, 'follow_up', A.follow_up) end
    redis.call('ZADD', K.waiting_children, precise, id)
  else
    bump(now, 'completed')
    if A.follow_up ~= '' then post('t|' .. id .. '|' .. A.follow_up, precise) end
    file_finished(K.completed, id, f, A.keep_completed, precise)
  end
elseif outcome == 'failed' then
  redis.call('HDEL', job, 'token', 'seq', 'state', 'finished', 'due', 'cancel')
  redis.call('HSET', job, 'error', A.value, 'traceback', A.traceback)
  bump(now, 'failed')
  file_finished(K.failed, id, f, A.keep_failed, precise)
elseif outcome == 'retry' then
  redis.call('HDEL', job, 'token', 'seq', 'state', 'finished', 'due', 'cancel')
  redis.call('HSET', job, 'error', A.value, 'traceback', A.traceback)
  redis.call('ZADD', K.delayed, now + tonumber(A.delay_ms), id)
  bump(now, 'retried')
else -- requeue
  to_old_place_in_waiting(job, id, K.waiting, f)
  wake(K.wake, 1)
end
local stored = (reason and 3) or (cancelled and 2) or 1
if A.fetch ~= '1' then return {stored, TOLD} end
local nxt = take(K.waiting, K.active, K.failed, K.paused, K.limiter, A.next_token, now)
return {stored, TOLD, unpack(nxt)}
