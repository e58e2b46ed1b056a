-- Delete one job of this queue that is not running.
-- KEYS: waiting, active, delayed, completed, failed
-- ARGV: job key prefix, id, queue name
-- Returns 1 removed, 0 no such job, -1 refused: the job is active,
-- -2 refused: the record belongs to another queue.
local job = ARGV[1] .. ARGV[2]
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return -1 end
if is_job(job) then
  local name = redis.call('HGET', job, 'name')
  if name and string.sub(name, 1, #ARGV[3] + 1) ~= ARGV[3] .. '.' then return -2 end
end
local removed = 0
for _, set in ipairs({KEYS[1], KEYS[3], KEYS[4], KEYS[5]}) do
  removed = removed + redis.call('ZREM', set, ARGV[2])
end
removed = removed + redis.call('DEL', job, job .. ':logs')
if removed > 0 then return 1 end
return 0
