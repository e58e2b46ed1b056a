-- A worker is done with a job. Only the lease holder may release it. With
-- fetch = 1 the same call also takes the worker's next job (one round trip per
-- job on a busy queue).
-- KEYS: job, active, target set (completed | failed | delayed | waiting), wake,
--       waiting, paused, limiter
-- ARGV: id, token, outcome (completed | failed | retry | requeue), value (result or error),
--       traceback, delay_ms, default keep, job key prefix, metrics key prefix,
--       metrics ttl seconds, duration_ms,
--       fetch (1 | 0), next token, consumer, rate_max, rate_per_ms, lease_ms
-- Returns {1, <take() reply>} | {1} without fetch | {0} when the caller no longer
-- holds the job (recovered, timed out, removed).
local job, id = KEYS[1], ARGV[1]
local token, state = unpack(redis.call('HMGET', job, 'token', 'state'))
if token ~= ARGV[2] or state ~= 'active' then return {0} end
redis.call('ZREM', KEYS[2], id)
local now = now_ms()
local outcome, ttl = ARGV[3], tonumber(ARGV[10])

if outcome == 'completed' then
  redis.call('HSET', job, 'state', 'completed', 'finished', now, 'result', ARGV[4], 'token', '')
  local samples = bump(ARGV[9], now, 'completed', ttl) .. ':ms'
  local count = redis.call('RPUSH', samples, ARGV[11])
  if count == 1 then
    redis.call('EXPIRE', samples, ttl)
  elseif count > 256 then
    redis.call('LTRIM', samples, -256, -1)
  end
  file_finished(KEYS[3], job, id, 'completed', now, ARGV[7], ARGV[8])
elseif outcome == 'failed' then
  redis.call('HSET', job, 'state', 'failed', 'finished', now, 'error', ARGV[4],
    'traceback', ARGV[5], 'token', '')
  bump(ARGV[9], now, 'failed', ttl)
  file_finished(KEYS[3], job, id, 'failed', now, ARGV[7], ARGV[8])
elseif outcome == 'retry' then
  local due = now + tonumber(ARGV[6])
  redis.call('HSET', job, 'state', 'delayed', 'due', due, 'error', ARGV[4],
    'traceback', ARGV[5], 'token', '')
  redis.call('ZADD', KEYS[3], due, id)
  bump(ARGV[9], now, 'retried', ttl)
else -- requeue: interrupted by shutdown; the attempt does not count
  to_old_place_in_waiting(job, id, KEYS[3])
  wake(KEYS[4], 1)
end
if ARGV[12] ~= '1' then return {1} end
local nxt = take(KEYS[5], KEYS[2], KEYS[6], KEYS[7], ARGV[8], ARGV[17], ARGV[13], ARGV[14],
  ARGV[15], ARGV[16])
return {1, unpack(nxt)}
