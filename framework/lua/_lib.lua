-- Shared helpers, after the generated prelude (constants, K, A) of every script.
-- A job record (framework/record.py) keeps only what is true of the job:
-- state is where its id is (which sorted set), never a field.

local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Milliseconds with a microsecond fraction: orders jobs finished in one ms.
local function now_precise()
  local t = redis.call('TIME')
  return t[1] * 1000 + t[2] / 1000
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

-- Retention: keep the newest `keep` members of a finished set; older jobs go.
local function trim(set, keep)
  local extra = redis.call('ZCARD', set) - keep
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', set, extra)
    for i = 1, #popped, 2 do delete_job(popped[i]) end
  end
end

-- File a finished job under its set (completed | failed) and apply retention:
-- the job's own keep_<state> option if it has one (>= 0), else the queue's.
-- keep = 0 removes just this job (Bull's removeOnComplete: true); keep = N
-- keeps the newest N of the set (Bull's removeOnComplete: N).
local function file_finished(set, job, id, state, default_keep)
  local keep = tonumber(redis.call('HGET', job, 'keep_' .. state))
  if keep == nil or keep < 0 then keep = tonumber(default_keep) end
  if keep == 0 then
    delete_job(id)
    return
  end
  redis.call('ZADD', set, now_precise(), id)
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

-- Back to waiting at its old place (the sequence it was claimed with), the
-- attempt not counted: interrupted by shutdown, or recovered from a dead consumer.
local function to_old_place_in_waiting(job, id, waiting)
  redis.call('HINCRBY', job, 'attempts', -1)
  local seq = redis.call('HGET', job, 'seq') or 0
  redis.call('HDEL', job, 'token', 'seq', 'state')
  redis.call('ZADD', waiting, waiting_score(priority_of(job, A.default_priority), seq), id)
end

-- Take the best waiting job for a worker: the pause check, the sliding-window
-- rate limit, then the lowest score moves to active with a lease and `token`.
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms}
--       | {'job', id, attempts, handler, payload, max_attempts, name, data}
-- (name and data are set only on a record an older hueyard wrote).
local function take(waiting, active, paused, limiter, token)
  if redis.call('EXISTS', paused) == 1 then return {'paused'} end
  local now = now_ms()
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
    -- An id without a record (a hash) is not a job: it is dropped, never run.
    if is_job(job) then
      local attempts = redis.call('HINCRBY', job, 'attempts', 1)
      redis.call('HSET', job, 'started', now, 'token', token, 'consumer', A.consumer,
        'seq', tonumber(popped[2]) % SEQ_SPAN)
      redis.call('ZADD', active, now + tonumber(A.lease_ms), id)
      if rate_max > 0 then
        redis.call('ZADD', limiter, now, id .. ':' .. attempts)
        redis.call('PEXPIRE', limiter, per + 1000)
      end
      local fields = redis.call('HMGET', job, 'handler', 'payload', 'max_attempts', 'name', 'data')
      return {'job', id, attempts, unpack(fields, 1, 5)}
    end
  end
  return {'empty'}
end
