-- Shared helpers, prepended to every script by framework/scripts.py.
-- Scores of the waiting set: priority first (1 = first), then enqueue order.
local SEQ_SPAN = 1099511627776  -- 2^40 sequence numbers per priority

local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Milliseconds with a microsecond fraction: orders jobs finished in one ms.
local function now_precise()
  local t = redis.call('TIME')
  return t[1] * 1000 + t[2] / 1000
end

local function waiting_score(priority, seq)
  return tonumber(priority) * SEQ_SPAN + tonumber(seq)
end

-- Wake up to n idle workers: one token each, pushed in one LPUSH. The list is
-- bounded: when a push takes it past 2 x WAKE_MAX (nobody was waiting to take
-- the tokens), it is cut back to WAKE_MAX, so the trim runs once per WAKE_MAX
-- pushes instead of on every one.
local WAKE_MAX = 64
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
local function bump(prefix, now, field, ttl)
  local stats = prefix .. math.floor(now / 60000)
  if redis.call('HINCRBY', stats, field, 1) == 1 and redis.call('TTL', stats) < 0 then
    redis.call('EXPIRE', stats, ttl)
  end
  return stats
end

-- Retention: keep the newest `keep` members of a finished set; older job
-- records go with their log lists.
local function trim(set, keep, job_prefix)
  local extra = redis.call('ZCARD', set) - keep
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', set, extra)
    for i = 1, #popped, 2 do
      redis.call('DEL', job_prefix .. popped[i], job_prefix .. popped[i] .. ':logs')
    end
  end
end

-- The job's own keep_<state> override, else the queue's default.
local function keep_for(job, state, default)
  local keep = tonumber(redis.call('HGET', job, 'keep_' .. state))
  if keep == nil or keep < 0 then return tonumber(default) end
  return keep
end

-- File a finished job under its set (completed | failed) and apply retention.
-- keep = 0 removes just this job (Bull's removeOnComplete: true); keep = N
-- keeps the newest N of the set (Bull's removeOnComplete: N).
local function file_finished(set, job, id, state, now, default_keep, job_prefix)
  local keep = keep_for(job, state, default_keep)
  if keep == 0 then
    redis.call('DEL', job, job .. ':logs')
    return
  end
  redis.call('ZADD', set, now_precise(), id)
  trim(set, keep, job_prefix)
end

local function is_job(key)
  return redis.call('TYPE', key).ok == 'hash'
end

-- The job ids given after ARGV[2], or fallback() when none are given.
local function given_ids(fallback)
  if #ARGV <= 2 then return fallback() end
  local ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
  return ids
end

-- To waiting, behind the jobs of its priority (a fresh enqueue sequence).
local function to_back_of_waiting(job, id, waiting, seq_key)
  local seq = redis.call('INCR', seq_key) % SEQ_SPAN
  redis.call('HSET', job, 'state', 'waiting', 'seq', seq)
  redis.call('ZADD', waiting, waiting_score(redis.call('HGET', job, 'priority'), seq), id)
end

-- Back to waiting at its old place (its enqueue sequence), the attempt not
-- counted: a job interrupted by shutdown, or recovered from a dead consumer.
local function to_old_place_in_waiting(job, id, waiting)
  redis.call('HINCRBY', job, 'attempts', -1)
  redis.call('HSET', job, 'state', 'waiting', 'token', '')
  local priority, seq = unpack(redis.call('HMGET', job, 'priority', 'seq'))
  redis.call('ZADD', waiting, waiting_score(priority, seq), id)
end

-- Take the best waiting job for a worker: the pause check, the sliding-window
-- rate limit, then the lowest score moves to active with a lease.
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms} | {'job', id, data, attempts, max_attempts}
local function take(waiting, active, paused, limiter, job_prefix, lease_ms, token, consumer,
                    rate_max, per)
  if redis.call('EXISTS', paused) == 1 then return {'paused'} end
  local now = now_ms()
  rate_max, per = tonumber(rate_max), tonumber(per)
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
    local job = job_prefix .. id
    if is_job(job) and redis.call('HEXISTS', job, 'data') == 1 then
      local attempts = redis.call('HINCRBY', job, 'attempts', 1)
      redis.call('HSET', job, 'state', 'active', 'started', now, 'token', token,
        'consumer', consumer)
      redis.call('ZADD', active, now + tonumber(lease_ms), id)
      if rate_max > 0 then
        redis.call('ZADD', limiter, now, id .. ':' .. attempts)
        redis.call('PEXPIRE', limiter, per + 1000)
      end
      local data, max_attempts = unpack(redis.call('HMGET', job, 'data', 'max_attempts'))
      return {'job', id, data, attempts, max_attempts}
    end
    -- An id without a job record is garbage: it is dropped, never run.
  end
  return {'empty'}
end
