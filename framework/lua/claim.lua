-- Take the best waiting job: pause check, sliding-window rate limit, then the
-- lowest score (priority, then FIFO) moves to active with a lease.
-- KEYS: waiting, active, paused, limiter
-- ARGV: job key prefix, lease_ms, token, consumer, rate_max (0 = none), rate_per_ms
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms} | {'job', id, data, attempts, max_attempts}
if redis.call('EXISTS', KEYS[3]) == 1 then return {'paused'} end
local now = now_ms()
local rate_max, per = tonumber(ARGV[5]), tonumber(ARGV[6])
if rate_max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - per)
  if redis.call('ZCARD', KEYS[4]) >= rate_max then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {'limited', tostring(math.max(1, tonumber(oldest[2]) + per - now))}
  end
end
for _ = 1, 16 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return {'empty'} end
  local id = popped[1]
  local job = ARGV[1] .. id
  if is_job(job) and redis.call('HEXISTS', job, 'data') == 1 then
    local attempts = redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', job, 'state', 'active', 'started', now, 'token', ARGV[3],
      'consumer', ARGV[4])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
    if rate_max > 0 then
      redis.call('ZADD', KEYS[4], now, id .. ':' .. attempts)
      redis.call('PEXPIRE', KEYS[4], per + 1000)
    end
    local data, max_attempts = unpack(redis.call('HMGET', job, 'data', 'max_attempts'))
    return {'job', id, data, attempts, max_attempts}
  end
  -- An id without a job record is garbage: it is dropped, never run.
end
return {'empty'}
