-- Cancel a job of this queue. A waiting, paused or delayed job leaves its set
-- and is filed as failed, "cancelled" (CANCELLED), at once; a running one is
-- marked, and the consumer that holds it stops it when it next renews its
-- lease (renew reports it).
-- Returns 'cancelled' | 'requested' (it runs) | 'finished' (completed or failed
-- already) | 'other' (the record belongs to another queue) | 'unknown'.
local id = A.id
local job = A.job_prefix .. id
if is_job(job) then
  local handler = redis.call('HGET', job, 'handler') or redis.call('HGET', job, 'name')
  if handler and string.sub(handler, 1, #A.queue + 1) ~= A.queue .. '.' then return 'other' end
end
if redis.call('ZSCORE', K.active, id) then
  if not is_job(job) then return 'unknown' end
  redis.call('HSET', job, 'cancel', 1)
  return 'requested'
end
for _, set in ipairs({K.waiting, K.delayed}) do
  if redis.call('ZREM', set, id) == 1 then
    if not is_job(job) then return 'unknown' end
    local now, precise = clock()
    fail_job(job, id, K.failed, CANCELLED, redis.call('HGET', job, 'keep_failed'), now, precise)
    return 'cancelled'
  end
end
if redis.call('ZSCORE', K.completed, id) or redis.call('ZSCORE', K.failed, id) then
  return 'finished'
end
return 'unknown'
