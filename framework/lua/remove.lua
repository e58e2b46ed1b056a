-- Delete one job of this queue that is not running, whatever its record holds.
-- A set key of another type can not hold the id, so it is skipped (pcall: a
-- command that fails writes nothing). A job removed before it finished that
-- names a parent tells it, as failed (the parent would wait for it forever).
-- Returns 1 removed, 0 no such job, -1 refused: the job is active,
-- -2 refused: the record belongs to another queue.
local bad = wrong_type(K.outbox, 'zset')
if bad then return bad end
local id = A.id
local job = A.job_prefix .. id
local active = redis.pcall('ZSCORE', K.active, id)
if active and not active.err then return -1 end
if is_job(job) then
  local handler = redis.call('HGET', job, 'handler') or redis.call('HGET', job, 'name')
  if handler and string.sub(handler, 1, #A.queue + 1) ~= A.queue .. '.' then return -2 end
end
local removed = 0
local unfinished = false
for _, set in ipairs({K.waiting, K.delayed, K.waiting_children, K.completed, K.failed}) do
  local count = redis.pcall('ZREM', set, id)
  if type(count) == 'number' then
    removed = removed + count
    if count == 1 and set ~= K.completed and set ~= K.failed then unfinished = true end
  end
end
if is_job(job) then
  free_key(job, id, true)
  if unfinished then tell_parent(job, id, 'failed', now_ms()) end
end
removed = removed + redis.call('DEL', job, job .. LOGS, job .. CHILDREN)
if removed > 0 then return 1 end
return 0
