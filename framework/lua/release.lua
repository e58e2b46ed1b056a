-- A worker is done with a job. Only the holder of the claim's token may
-- release it (the token goes with the release). With A.fetch = '1' the same
-- call also takes the worker's next job: one round trip per job on a busy queue.
-- Outcomes (framework.options.Outcome): completed (A.value = the result),
-- failed (A.value = the error), retry (delayed by A.delay_ms; A.value = the
-- error), requeue (interrupted by shutdown: back to waiting, the attempt not counted).
-- Returns {1, <take() reply>} | {1} without fetch | {0} when the caller no longer
-- holds the job (recovered, timed out, removed).
local job, id = K.job, A.id
if redis.call('HGET', job, 'token') ~= A.token then return {0} end
redis.call('ZREM', K.active, id)
local now = now_ms()
local outcome = A.outcome

if outcome == 'completed' then
  redis.call('HSET', job, 'result', A.value)
  redis.call('HDEL', job, 'token', 'seq', 'error', 'traceback', 'state', 'finished', 'due')
  local samples = bump(now, 'completed') .. SAMPLES
  local count = redis.call('RPUSH', samples, A.duration_ms)
  if count == 1 then
    redis.call('EXPIRE', samples, A.metrics_ttl)
  elseif count > MAX_SAMPLES then
    redis.call('LTRIM', samples, -MAX_SAMPLES, -1)
  end
  file_finished(K.completed, job, id, 'completed', A.keep_completed)
elseif outcome == 'failed' then
  redis.call('HSET', job, 'error', A.value, 'traceback', A.traceback)
  redis.call('HDEL', job, 'token', 'seq', 'state', 'finished', 'due')
  bump(now, 'failed')
  file_finished(K.failed, job, id, 'failed', A.keep_failed)
elseif outcome == 'retry' then
  redis.call('HSET', job, 'error', A.value, 'traceback', A.traceback)
  redis.call('HDEL', job, 'token', 'seq', 'state', 'finished', 'due')
  redis.call('ZADD', K.delayed, now + tonumber(A.delay_ms), id)
  bump(now, 'retried')
else -- requeue
  to_old_place_in_waiting(job, id, K.waiting)
  wake(K.wake, 1)
end
if A.fetch ~= '1' then return {1} end
local nxt = take(K.waiting, K.active, K.paused, K.limiter, A.next_token)
return {1, unpack(nxt)}
