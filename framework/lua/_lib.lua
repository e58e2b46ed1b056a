-- Shared helpers, after the generated prelude (constants, K, A) of every script.
-- A job record (framework/record.py) keeps only what is true of the job:
-- state is where its id is (which sorted set), never a field.
--
-- Check first, write after. Redis keeps what a script wrote before a command
-- that fails, so no script writes before it has checked everything that could
-- make one of its commands fail: the type of each key it writes
-- (wrong_type, not_counter) and the record of each job it moves (read_job).
-- A key of the wrong type stops the script with an error reply naming it,
-- before anything is written; a corrupt record sends its job to failed with
-- the reason (quarantine). Writes that only count (metrics) use pcall: a
-- command that fails writes nothing, and a metric is never a reason to stop.

local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- The server's clock, read once: milliseconds, and milliseconds with a
-- microsecond fraction (which orders jobs finished in one millisecond).
local function clock()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000), t[1] * 1000 + t[2] / 1000
end

-- Scores of the waiting set: priority first (1 = first), then enqueue order.
local function waiting_score(priority, seq)
  return tonumber(priority) * SEQ_SPAN + tonumber(seq)
end

-- The job's priority option, else the queue's default.
local function priority_of(job, default)
  return redis.call('HGET', job, 'priority') or default
end

-- Wake up to n idle workers: one token each, pushed in one LPUSH. The list is
-- bounded: when a push takes it past 2 x WAKE_MAX (nobody was waiting to take
-- the tokens), it is cut back to WAKE_MAX, so the trim runs once per WAKE_MAX
-- pushes instead of on every one.
local function wake(key, n)
  if n <= 0 then return end
  local length
  if n == 1 then
    length = redis.call('LPUSH', key, 1)
  else
    local tokens = {}
    for i = 1, math.min(n, WAKE_MAX) do tokens[i] = 1 end
    length = redis.call('LPUSH', key, unpack(tokens))
  end
  if length > 2 * WAKE_MAX then redis.call('LTRIM', key, 0, WAKE_MAX - 1) end
end

-- Count an event in the per-minute metrics hash, which expires. The expiry is
-- set when the hash is created (its first field is 1); later bumps skip it.
-- A planted key of another type (or a field that is not a number) is skipped.
local function bump(now, field)
  local stats = A.stats_prefix .. math.floor(now / 60000)
  if redis.pcall('HINCRBY', stats, field, 1) == 1 and redis.call('TTL', stats) < 0 then
    redis.call('EXPIRE', stats, A.metrics_ttl)
  end
  return stats
end

-- Delete a job's record, its log lines and its children set.
local function delete_job(id)
  local job = A.job_prefix .. id
  redis.call('DEL', job, job .. LOGS, job .. CHILDREN)
end

-- A sorted set kept full, like a finished set at its retention (Bull's keep of
-- 100 is just under zset-max-listpack-entries, 128), costs a scan of every
-- member per ZADD in Redis's compact listpack form: 26 us at 100 members,
-- against 4 us in a skiplist. One member longer than zset-max-listpack-value
-- turns a new set into a skiplist, which stays one when the member goes.
local function as_skiplist(set)
  local filler = string.rep('~', 4096)
  redis.call('ZADD', set, 0, filler)
  redis.call('ZREM', set, filler)
end

-- Retention: keep the newest `keep` members of a finished set; older jobs go.
local function trim(set, keep)
  local count = redis.call('ZCARD', set)
  if count == 1 then as_skiplist(set) end
  local extra = count - keep
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', set, extra)
    for i = 1, #popped, 2 do delete_job(popped[i]) end
  end
end

-- A job enqueued with key=... holds its key (A.key_prefix .. key -> id) while
-- it is unfinished. When it finishes (or is removed: `now` true) the key is
-- freed: at once, or key_ttl seconds later, so that a late duplicate is still
-- refused. A key held by another job, or of another type, is left alone.
-- `f`: the record's fields as read_job() read them (nil: read them here).
local function free_key(job, id, now, f)
  local key, ttl
  if f then
    key, ttl = f.key, f.key_ttl
  else
    key, ttl = unpack(redis.call('HMGET', job, 'key', 'key_ttl'))
  end
  if not key then return end
  local index = A.key_prefix .. key
  local holder = redis.pcall('GET', index)
  if holder ~= id then return end
  local ms = (not now) and math.floor((tonumber(ttl) or 0) * 1000) or 0
  if ms > 0 then redis.call('PEXPIRE', index, ms) else redis.call('DEL', index) end
end

-- A failed job retried by hand holds its key again, unless another job took
-- it meanwhile (it then runs without: the newer job keeps the key).
local function take_key_again(job, id)
  local key = redis.call('HGET', job, 'key')
  if not key then return end
  local index = A.key_prefix .. key
  local holder = redis.pcall('GET', index)
  if holder == id then
    redis.call('PERSIST', index)
  elseif holder == false then
    redis.call('SET', index, id)
  end
end

-- Post a notice to this queue's outbox (score: when), for the consumer that made
-- it to deliver at once, or the recovery pass later (framework/fanin.py): a
-- child's outcome for its parent ('c|<parent queue>:<parent id>|<child id>|<outcome>')
-- or a completed job's follow-up ('t|<id>|<follow-up JSON>'). The caller checked
-- K.outbox's type. The outbox is bounded: past OUTBOX_MAX the oldest notice goes.
-- TOLD collects what this call posted (release returns it).
local function post(notice, at)
  if redis.call('ZADD', K.outbox, at, notice) == 1 and redis.call('ZCARD', K.outbox) > OUTBOX_MAX then
    redis.call('ZREMRANGEBYRANK', K.outbox, 0, 0)
  end
  TOLD[#TOLD + 1] = notice
end

-- A job that finished (`outcome`: completed | failed) and names a parent
-- ("<queue>:<id>", enqueued by the parent's spawn) tells it, through the outbox:
-- the parent's queue may be on another server, so no script here touches it.
-- `f`: the record's fields as read_job() read them (nil: read them here).
local function tell_parent(job, id, outcome, at, f)
  local parent
  if f then parent = f.parent else parent = redis.call('HGET', job, 'parent') end
  if parent then post('c|' .. parent .. '|' .. id .. '|' .. outcome, at) end
end

-- A parent that finished keeps links to CHILD_LINKS_KEPT of its children: the
-- lowest scores go first (pending, then completed: failed ones are kept longest).
-- Its counts are fields of its record and stay whole. A key of another type is
-- left alone (pcall: a command that fails writes nothing). With `f` (the record's
-- fields, read_job()), a record that counts no child has no set to settle.
local function settle_children(job, f)
  if f and not f.children then return end
  local count = redis.pcall('ZCARD', job .. CHILDREN)
  if type(count) == 'number' and count > CHILD_LINKS_KEPT then
    redis.call('ZREMRANGEBYRANK', job .. CHILDREN, 0, count - CHILD_LINKS_KEPT - 1)
  end
end

-- File a finished job under its set (completed | failed) at time `at` and
-- apply retention: `keep`, the job's own keep_<state> option if it has one
-- (>= 0), else `default_keep`, the queue's. keep = 0 removes just this job
-- (Bull's removeOnComplete: true); keep = N keeps the newest N of the set
-- (Bull's removeOnComplete: N). Its parent, if it has one, is told first.
-- `f`: the record's fields as read_job() read them before this call wrote.
local function file_finished(set, id, f, default_keep, at)
  local job = A.job_prefix .. id
  local failed = set == K.failed
  free_key(job, id, false, f)
  tell_parent(job, id, failed and 'failed' or 'completed', at, f)
  settle_children(job, f)
  local keep
  if failed then keep = tonumber(f.keep_failed) else keep = tonumber(f.keep_completed) end
  if keep == nil or keep < 0 then keep = tonumber(default_keep) end
  if keep == 0 then
    delete_job(id)
    return
  end
  redis.call('ZADD', set, at, id)
  trim(set, keep)
end

-- nil when every `key` is of its `kind` (or absent), else an error reply naming
-- the first that is not, for the script to return before it writes anything.
-- Arguments: key, kind, key, kind, ... A key found right once is not asked
-- again in the same call (CHECKED): what this call wrote there is of its kind.
local function wrong_type(...)
  local checks = {...}
  for i = 1, #checks, 2 do
    local key, kind = checks[i], checks[i + 1]
    if CHECKED[key] ~= kind then
      local found = redis.call('TYPE', key).ok
      if found ~= 'none' and found ~= kind then
        return redis.error_reply('HUEYARD_WRONGTYPE ' .. found .. ' ' .. kind .. ' ' .. key)
      end
      CHECKED[key] = kind
    end
  end
  return nil
end

-- A whole number >= 0 as Redis's INCR and HINCRBY read one (no sign, no
-- leading zero, no exponent), short enough never to overflow.
local function is_count(value)
  return value == '0' or (#value <= 18 and string.match(value, '^[1-9]%d*$') ~= nil)
end

-- nil when INCR can count on `key` (absent, or a whole number), else an error reply.
local function not_counter(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    return redis.error_reply('HUEYARD_WRONGTYPE ' .. redis.call('TYPE', key).ok .. ' string '
      .. key)
  end
  if value and not is_count(value) then return redis.error_reply('HUEYARD_COUNTER ' .. key) end
  return nil
end

-- A stored value, quoted and cut, for a reason.
local function shown(value)
  local head = string.format('%q', string.sub(value, 1, 40))
  if #value > 40 then return head .. '...' end
  return head
end

-- Why a number field of a record can not be used, or nil when it can.
local function bad_number(name, value)
  if name == 'timeout' then
    local seconds = string.match(value, '^[%d.eE+-]+$') and tonumber(value)
    if seconds and seconds > 0 and seconds <= MAX_TIMEOUT then return nil end
    return name .. ' is ' .. shown(value) .. ', not seconds above 0'
  end
  local n = (is_count(value) or (name == 'keep_completed' or name == 'keep_failed')
    and is_count(string.sub(value, 2)) and string.sub(value, 1, 1) == '-') and tonumber(value)
  local low, high = 0, nil
  if n and n < 0 then -- a negative keep_* is how hueyard 0.1.0 said "the queue's"
    return nil
  elseif name == 'priority' then
    low, high = PRIORITY_HIGHEST, PRIORITY_LOWEST
  elseif name == 'max_attempts' then
    low, high = 1, MAX_ATTEMPTS
  end
  if n and n >= low and (high == nil or n <= high) then return nil end
  local range = high and (low .. ' to ' .. high) or (low .. ' up')
  return name .. ' is ' .. shown(value) .. ', not a whole number from ' .. range
end

-- Whether any of the first `n` values of an HMGET reply is there.
local function any_value(values, n)
  for i = 1, n do
    if values[i] then return true end
  end
  return false
end

-- Read a job's record before moving the job: the fields `names`, and the
-- numbers the scripts compute with (checked; an empty one counts as absent).
-- Returns the fields by name (false: absent), what the key holds ('hash',
-- 'none' or another type), and why the record is corrupt: nil for a hash whose
-- numbers are numbers, or for no record at all (an id without a record:
-- nothing to run, nothing to keep).
local function read_job(job, names)
  local all = {'attempts', 'stalls', 'priority', 'max_attempts', 'timeout', 'keep_completed',
    'keep_failed', 'seq', 'children', 'children_completed', 'children_failed'}
  local numbers = #all
  -- and what finishing a job needs (file_finished): its key and its parent
  for _, name in ipairs({'key', 'key_ttl', 'parent'}) do all[#all + 1] = name end
  for _, name in ipairs(names) do all[#all + 1] = name end
  -- One read tells the usual case, a hash holding some of these fields; TYPE and
  -- EXISTS are asked only when it does not (a key of another type, or nothing read).
  local values = redis.pcall('HMGET', job, unpack(all))
  if values.err then
    local kind = redis.call('TYPE', job).ok
    return {}, kind, 'its key is a ' .. kind .. ', not a hash'
  end
  local kind = 'hash'
  if not any_value(values, #all) and redis.call('EXISTS', job) == 0 then
    return {}, 'none', nil
  end
  local fields = {}
  for i, name in ipairs(all) do fields[name] = values[i] end
  for i = 1, numbers do
    if values[i] == '' then
      fields[all[i]] = false
    elseif values[i] then
      local why = bad_number(all[i], values[i])
      if why then return fields, kind, why end
    end
  end
  return fields, kind, nil
end

-- A job whose record is corrupt goes to failed (score `at`), out of the set it
-- was in (the caller took it out), with the reason when its key is a hash: a
-- key of another type can hold none, and readers say what it is. It never
-- runs, and it is never left out of every set.
local function quarantine(job, id, failed, kind, reason, at)
  if kind == 'hash' then
    free_key(job, id, true)
    redis.call('HDEL', job, 'token', 'follow_up')
    redis.call('HSET', job, 'error', 'corrupt record: ' .. reason
      .. '; correct the field (HSET) and retry the job, or remove it')
    tell_parent(job, id, 'failed', at)
    settle_children(job)
  end
  redis.call('ZADD', failed, at, id)
end

local function is_job(key)
  return redis.call('TYPE', key).ok == 'hash'
end

-- Whether `id` is in the sorted set `set` (a key of another type holds nothing).
local function in_set(set, id)
  return type(redis.pcall('ZSCORE', set, id)) == 'string'
end

-- The ids of the rows, or fallback() when the call passed none.
local function given_ids(fallback)
  if ROW_COUNT == 0 then return fallback() end
  local ids = {}
  for row in rows() do ids[#ids + 1] = row.id end
  return ids
end

-- To waiting, behind the jobs of its priority (a fresh enqueue sequence).
local function to_back_of_waiting(job, id, waiting, seq_key)
  local seq = redis.call('INCR', seq_key) % SEQ_SPAN
  redis.call('ZADD', waiting, waiting_score(priority_of(job, A.default_priority), seq), id)
end

-- Back to waiting at its old place (`seq`, the sequence it was claimed with),
-- the attempt not counted: interrupted by shutdown, or recovered from a dead
-- consumer. `f` holds the record's fields (read_job): its priority option
-- (false: the queue's), its sequence and its attempts.
local function to_old_place_in_waiting(job, id, waiting, f)
  redis.call('HSET', job, 'attempts', math.max((tonumber(f.attempts) or 1) - 1, 0))
  redis.call('HDEL', job, 'token', 'seq', 'state')
  redis.call('ZADD', waiting, waiting_score(f.priority or A.default_priority, f.seq or 0), id)
end

-- A job that is not running any more, failed for `reason` at time `now`:
-- its lease token, its place and a cancel request go; retention applies.
local function fail_job(job, id, failed, reason, f, now, precise)
  redis.call('HDEL', job, 'token', 'seq', 'state', 'cancel', 'traceback', 'finished', 'due',
    'follow_up')
  redis.call('HSET', job, 'error', reason)
  bump(now, 'failed')
  file_finished(failed, id, f, A.keep_failed, precise)
end

-- What take() writes, checked before the first write of a script that takes a job.
local function wrong_take_keys(waiting, active, failed, limiter)
  local bad = wrong_type(waiting, 'zset', active, 'zset', failed, 'zset', K.outbox, 'zset')
  if bad or tonumber(A.rate_max) <= 0 then return bad end
  return wrong_type(limiter, 'zset')
end

-- Take the best waiting job for a worker at time `now`: the pause check, the
-- sliding-window rate limit, then the lowest score moves to active with a
-- lease and `token`. The caller checked the keys (wrong_take_keys). One read
-- of the record gets what the worker needs and tells a job from an id without
-- a record (dropped: nothing to run) and from a corrupt record (to failed,
-- with the reason, by quarantine): neither is ever run.
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms}
--       | {'job', id, attempts, handler, payload, max_attempts, timeout, name, data, then}
-- (name and data are set only on a record that hueyard 0.1.0 wrote; then only on a
-- job with follow-ups).
local function take(waiting, active, failed, paused, limiter, token, now)
  if redis.call('EXISTS', paused) == 1 then return {'paused'} end
  local rate_max, per = tonumber(A.rate_max), tonumber(A.rate_per_ms)
  if rate_max > 0 then
    redis.call('ZREMRANGEBYSCORE', limiter, '-inf', now - per)
    if redis.call('ZCARD', limiter) >= rate_max then
      local oldest = redis.call('ZRANGE', limiter, 0, 0, 'WITHSCORES')
      return {'limited', tostring(math.max(1, tonumber(oldest[2]) + per - now))}
    end
  end
  for _ = 1, 16 do
    local popped = redis.call('ZPOPMIN', waiting)
    if #popped == 0 then return {'empty'} end
    local id = popped[1]
    local job = A.job_prefix .. id
    local f, kind, reason = read_job(job, {'handler', 'payload', 'name', 'data', 'then'})
    if kind == 'hash' and not reason and not (f.handler or f.payload or f.data) then
      reason = 'it has no handler and no payload'
    end
    if reason then
      quarantine(job, id, failed, kind, reason, now)
    elseif kind == 'hash' then
      local attempts = (tonumber(f.attempts) or 0) + 1
      redis.call('HSET', job, 'attempts', attempts, 'started', now, 'token', token,
        'consumer', A.consumer, 'seq', tonumber(popped[2]) % SEQ_SPAN)
      redis.call('ZADD', active, now + tonumber(A.lease_ms), id)
      if rate_max > 0 then
        redis.call('ZADD', limiter, now, id .. ':' .. attempts)
        redis.call('PEXPIRE', limiter, per + 1000)
      end
      return {'job', id, attempts, f.handler, f.payload, f.max_attempts, f.timeout, f.name, f.data,
        f['then']}
    end
  end
  return {'empty'}
end
