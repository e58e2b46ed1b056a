-- Cancel a job of this queue. A waiting, paused or delayed job, or a parent
-- waiting for its children, leaves its set and is filed as failed, "cancelled"
-- (CANCELLED), at once (its parent, if any, is told); a running one is
-- marked, and the consumer that holds it stops it when it next renews its
-- lease (renew reports it). A job whose record is corrupt fails with the
-- reason instead (a running one too: no consumer can hold it).
-- Returns 'cancelled' | 'requested' (it runs) | 'finished' (completed or failed
-- already) | 'other' (the record belongs to another queue) | 'unknown'.
local bad = wrong_type(K.waiting, 'zset', K.active, 'zset', K.delayed, 'zset', K.completed, 'zset',
  K.failed, 'zset', K.waiting_children, 'zset', K.outbox, 'zset')
if bad then return bad end
local id = A.id
local job = A.job_prefix .. id
local f, kind, reason = read_job(job, {'handler', 'name'})
local handler = f.handler or f.name
if handler and string.sub(handler, 1, #A.queue + 1) ~= A.queue .. '.' then return 'other' end
for _, set in ipairs({K.active, K.waiting, K.delayed, K.waiting_children}) do
  if redis.call('ZSCORE', set, id) then
    if kind == 'none' then
      redis.call('ZREM', set, id)
      return 'unknown'
    end
    local now, precise = clock()
    if reason then
      redis.call('ZREM', set, id)
      quarantine(job, id, K.failed, kind, reason, precise)
      return 'cancelled'
    end
    if set == K.active then
      redis.call('HSET', job, 'cancel', 1)
      return 'requested'
    end
    redis.call('ZREM', set, id)
    fail_job(job, id, K.failed, CANCELLED, f, now, precise)
    return 'cancelled'
  end
end
if redis.call('ZSCORE', K.completed, id) or redis.call('ZSCORE', K.failed, id) then
  return 'finished'
end
return 'unknown'
