-- Move delayed jobs to waiting: the due ones (no ids given), or the given ids now.
-- KEYS: delayed, waiting, seq, wake
-- ARGV: job key prefix, limit, ids...
-- Returns the number moved.
local ids = given_ids(function()
  return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
end)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = ARGV[1] .. id
    if is_job(job) and redis.call('HEXISTS', job, 'priority') == 1 then
      redis.call('HDEL', job, 'due')
      to_back_of_waiting(job, id, KEYS[2], KEYS[3])
      moved = moved + 1
    end
  end
end
wake(KEYS[4], moved)
return moved
