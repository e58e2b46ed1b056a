-- Jobs whose lease expired (their consumer died) go back to waiting at their
-- old place, counting a stall; past A.max_stalls they fail as stalled, and a
-- job cancelled meanwhile fails as cancelled.
-- Returns {recovered, failed}.
local now, precise = clock()
local ids = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(A.limit))
local recovered, failed = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K.active, id)
  local job = A.job_prefix .. id
  if is_job(job) then
    local stalls = redis.call('HINCRBY', job, 'stalls', 1)
    local keep, priority, seq, cancel = unpack(redis.call('HMGET', job, 'keep_failed',
      'priority', 'seq', 'cancel'))
    if cancel then
      fail_job(job, id, K.failed, CANCELLED, keep, now, precise)
      failed = failed + 1
    elseif stalls > tonumber(A.max_stalls) then
      fail_job(job, id, K.failed,
        'stalled: its consumer stopped renewing the lease ' .. stalls .. ' times',
        keep, now, precise)
      failed = failed + 1
    else
      to_old_place_in_waiting(job, id, K.waiting, priority, seq)
      recovered = recovered + 1
    end
  end
end
wake(K.wake, recovered)
return {recovered, failed}
