-- Jobs whose lease expired (their consumer died) go back to waiting at their
-- old place, counting a stall; past A.max_stalls they fail as stalled, and a
-- job cancelled meanwhile fails as cancelled. A job whose record is corrupt
-- fails with the reason; an id without a record is dropped.
-- Returns {recovered, failed}.
local bad = wrong_type(K.active, 'zset', K.waiting, 'zset', K.failed, 'zset', K.wake, 'list',
  K.outbox, 'zset')
if bad then return bad end
local now, precise = clock()
local ids = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(A.limit))
local recovered, failed = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K.active, id)
  local job = A.job_prefix .. id
  local f, kind, reason = read_job(job, {'cancel'})
  if reason then
    quarantine(job, id, K.failed, kind, reason, precise)
    failed = failed + 1
  elseif kind == 'hash' then
    local stalls = (tonumber(f.stalls) or 0) + 1
    redis.call('HSET', job, 'stalls', stalls)
    if f.cancel then
      fail_job(job, id, K.failed, CANCELLED, f, now, precise)
      failed = failed + 1
    elseif stalls > tonumber(A.max_stalls) then
      fail_job(job, id, K.failed,
        'stalled: its consumer stopped renewing the lease ' .. stalls .. ' times',
        f, now, precise)
      failed = failed + 1
    else
      to_old_place_in_waiting(job, id, K.waiting, f)
      recovered = recovered + 1
    end
  end
end
wake(K.wake, recovered)
return {recovered, failed}
