-- The children of one parent (K.job, A.id), on the parent's queue: each row is a
-- child ("<queue>:<id>") and its state: pending (linked by the parent's spawn),
-- completed or failed (a child's notice, delivered from its queue's outbox).
-- The children set (job .. CHILDREN) holds each child once, its score its
-- state's band plus the time it got there; the record counts them (children,
-- children_completed, children_failed). A child counts once, with its first
-- outcome: a row that says again what is counted changes nothing (a notice
-- delivered twice, a spawn run again), and a child's notice that comes before
-- its parent linked it counts it all the same.
-- When the parent waits in waiting-children (its handler returned) and no child
-- is pending any more, it completes: its follow-up (follow_up) is posted, and
-- its own parent is told.
-- Returns {status, added, told} (told: the notices it posted to the outbox): 'gone' (no record) and 'finished' (the parent finished
-- already) write nothing; 'full' (pending rows would take it past A.max_children;
-- nothing written, added = the children it has); 'corrupt' (a number of the
-- record is not one: a waiting parent fails with the reason); 'counted';
-- 'completed' (the parent completed now). added: the children new to the set.
local bad = wrong_type(K.waiting_children, 'zset', K.completed, 'zset', K.failed, 'zset',
  K.outbox, 'zset', K.job .. CHILDREN, 'zset')
if bad then return bad end
local job, id, children = K.job, A.id, K.job .. CHILDREN
local f, kind, reason = read_job(job, {'follow_up'})
if kind ~= 'hash' then return {'gone', 0, TOLD} end
if redis.call('ZSCORE', K.completed, id) or redis.call('ZSCORE', K.failed, id) then
  return {'finished', 0, TOLD}
end
local now, precise = clock()
if reason then
  if redis.call('ZREM', K.waiting_children, id) == 1 then
    quarantine(job, id, K.failed, kind, reason, precise)
  end
  return {'corrupt', 0, TOLD}
end
local linking = 0
for row in rows() do
  if row.state == 'pending' and not redis.call('ZSCORE', children, row.child) then
    linking = linking + 1
  end
end
local size = redis.call('ZCARD', children)
if linking > 0 and size + linking > tonumber(A.max_children) then return {'full', size, TOLD} end
local added = 0
for row in rows() do
  local before = tonumber(redis.call('ZSCORE', children, row.child))
  if not before then
    added = added + 1
    redis.call('HINCRBY', job, 'children', 1)
  end
  if row.state == 'pending' then
    if not before then redis.call('ZADD', children, now, row.child) end
  elseif not before or before < CHILD_BAND then
    local band = row.state == 'failed' and 2 * CHILD_BAND or CHILD_BAND
    redis.call('ZADD', children, band + now, row.child)
    redis.call('HINCRBY', job, 'children_' .. row.state, 1)
  end
end
if redis.call('ZSCORE', K.waiting_children, id)
    and redis.call('ZCOUNT', children, 0, CHILD_BAND - 1) == 0 then
  redis.call('ZREM', K.waiting_children, id)
  bump(now, 'completed')
  if f.follow_up then
    redis.call('HDEL', job, 'follow_up')
    post('t|' .. id .. '|' .. f.follow_up, precise)
  end
  file_finished(K.completed, id, f, A.keep_completed, precise)
  return {'completed', added, TOLD}
end
return {'counted', added, TOLD}
