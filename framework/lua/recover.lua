-- Jobs whose lease expired (their consumer died) go back to waiting at their
-- old place, counting a stall; past A.max_stalls they fail as stalled.
-- Returns {recovered, failed}.
local now, precise = clock()
local ids = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(A.limit))
local recovered, failed = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K.active, id)
  local job = A.job_prefix .. id
  if is_job(job) then
    local stalls = redis.call('HINCRBY', job, 'stalls', 1)
    local keep, priority, seq = unpack(redis.call('HMGET', job, 'keep_failed', 'priority', 'seq'))
    if stalls > tonumber(A.max_stalls) then
      redis.call('HDEL', job, 'token', 'seq', 'traceback', 'state')
      redis.call('HSET', job, 'error',
        'stalled: its consumer stopped renewing the lease ' .. stalls .. ' times')
      bump(now, 'failed')
      file_finished(K.failed, id, keep, A.keep_failed, precise)
      failed = failed + 1
    else
      to_old_place_in_waiting(job, id, K.waiting, priority, seq)
      recovered = recovered + 1
    end
  end
end
wake(K.wake, recovered)
return {recovered, failed}
