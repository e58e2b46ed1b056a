-- Failed jobs back to waiting with a fresh set of attempts: the given ids, or
-- the oldest `limit` failed jobs when no ids are given (callers loop in batches).
-- KEYS: failed, waiting, seq, wake
-- ARGV: job key prefix, limit, ids...
-- Returns the number moved.
local ids
if #ARGV > 2 then
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = ARGV[1] .. id
    if is_job(job) and redis.call('HEXISTS', job, 'priority') == 1 then
      local seq = redis.call('INCR', KEYS[3]) % SEQ_SPAN
      redis.call('HSET', job, 'state', 'waiting', 'seq', seq, 'attempts', 0, 'stalls', 0)
      redis.call('HDEL', job, 'finished', 'error', 'traceback', 'result', 'due', 'progress',
        'started', 'consumer')
      redis.call('DEL', job .. ':logs')
      redis.call('ZADD', KEYS[2], waiting_score(redis.call('HGET', job, 'priority'), seq), id)
      moved = moved + 1
    end
  end
end
wake(KEYS[4], moved)
return moved
