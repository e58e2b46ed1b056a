-- Shared helpers, after the generated prelude (constants, K, A) of every script.
-- A job record (framework/record.py) keeps only what is true of the job:
-- state is where its id is (which sorted set), never a field.

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
local function bump(now, field)
  local stats = A.stats_prefix .. math.floor(now / 60000)
  if redis.call('HINCRBY', stats, field, 1) == 1 and redis.call('TTL', stats) < 0 then
    redis.call('EXPIRE', stats, A.metrics_ttl)
  end
  return stats
end

-- Delete a job's record and its log lines.
local function delete_job(id)
  local job = A.job_prefix .. id
  redis.call('DEL', job, job .. LOGS)
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

-- File a finished job under its set (completed | failed) at time `at` and
-- apply retention: `keep`, the job's own keep_<state> option if it has one
-- (>= 0), else `default_keep`, the queue's. keep = 0 removes just this job
-- (Bull's removeOnComplete: true); keep = N keeps the newest N of the set
-- (Bull's removeOnComplete: N).
local function file_finished(set, id, keep, default_keep, at)
  keep = tonumber(keep)
  if keep == nil or keep < 0 then keep = tonumber(default_keep) end
  if keep == 0 then
    delete_job(id)
    return
  end
  redis.call('ZADD', set, at, id)
  trim(set, keep)
end

local function is_job(key)
  return redis.call('TYPE', key).ok == 'hash'
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
-- consumer. `priority` is the job's option (false: the queue's).
local function to_old_place_in_waiting(job, id, waiting, priority, seq)
  redis.call('HINCRBY', job, 'attempts', -1)
  redis.call('HDEL', job, 'token', 'seq', 'state')
  redis.call('ZADD', waiting, waiting_score(priority or A.default_priority, seq or 0), id)
end

-- A job that is not running any more, failed for `reason` at time `now`:
-- its lease token, its place and a cancel request go; retention applies.
local function fail_job(job, id, failed, reason, keep, now, precise)
  redis.call('HDEL', job, 'token', 'seq', 'state', 'cancel', 'traceback', 'finished', 'due')
  redis.call('HSET', job, 'error', reason)
  bump(now, 'failed')
  file_finished(failed, id, keep, A.keep_failed, precise)
end

-- Take the best waiting job for a worker at time `now`: the pause check, the
-- sliding-window rate limit, then the lowest score moves to active with a
-- lease and `token`. One HMGET reads what the worker needs and tells a record
-- from an id without one (or a key of another type), which is dropped, never run.
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms}
--       | {'job', id, attempts, handler, payload, max_attempts, timeout, name, data}
-- (name and data are set only on a record that hueyard 0.1.0 wrote).
local function take(waiting, active, paused, limiter, token, now)
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
    local f = redis.pcall('HMGET', job, 'attempts', 'handler', 'payload', 'max_attempts',
      'timeout', 'name', 'data', 'created')
    if not f.err and (f[2] or f[3] or f[7] or f[8]) then
      local attempts = (tonumber(f[1]) or 0) + 1
      redis.call('HSET', job, 'attempts', attempts, 'started', now, 'token', token,
        'consumer', A.consumer, 'seq', tonumber(popped[2]) % SEQ_SPAN)
      redis.call('ZADD', active, now + tonumber(A.lease_ms), id)
      if rate_max > 0 then
        redis.call('ZADD', limiter, now, id .. ':' .. attempts)
        redis.call('PEXPIRE', limiter, per + 1000)
      end
      return {'job', id, attempts, f[2], f[3], f[4], f[5], f[6], f[7]}
    end
  end
  return {'empty'}
end
