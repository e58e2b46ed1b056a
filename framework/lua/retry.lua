-- Failed jobs back to waiting with a fresh set of attempts: the given ids, or
-- the oldest `limit` failed jobs when no ids are given (callers loop in batches).
-- KEYS: failed, waiting, seq, wake
-- ARGV: job key prefix, limit, ids...
-- Returns the number moved.
local ids = given_ids(function()
  return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = ARGV[1] .. id
    if is_job(job) and redis.call('HEXISTS', job, 'priority') == 1 then
      redis.call('HSET', job, 'attempts', 0, 'stalls', 0)
      redis.call('HDEL', job, 'finished', 'error', 'traceback', 'result', 'due', 'progress',
        'started', 'consumer')
      redis.call('DEL', job .. ':logs')
      to_back_of_waiting(job, id, KEYS[2], KEYS[3])
      moved = moved + 1
    end
  end
end
wake(KEYS[4], moved)
return moved
