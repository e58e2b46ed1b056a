-- Delete one job that is not running.
-- KEYS: waiting, active, delayed, completed, failed
-- ARGV: job key prefix, id
-- Returns 1 removed, 0 no such job, -1 refused: the job is active.
local job = ARGV[1] .. ARGV[2]
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return -1 end
local removed = 0
for _, set in ipairs({KEYS[1], KEYS[3], KEYS[4], KEYS[5]}) do
  removed = removed + redis.call('ZREM', set, ARGV[2])
end
removed = removed + redis.call('DEL', job, job .. ':logs')
if removed > 0 then return 1 end
return 0
