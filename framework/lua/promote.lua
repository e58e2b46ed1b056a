-- Move delayed jobs to waiting: the due ones (no ids given), or the given ids now.
-- KEYS: delayed, waiting, seq, wake
-- ARGV: job key prefix, limit, ids...
-- Returns the number moved.
local ids
if #ARGV > 2 then
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
end
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = ARGV[1] .. id
    if is_job(job) and redis.call('HEXISTS', job, 'priority') == 1 then
      local seq = redis.call('INCR', KEYS[3]) % SEQ_SPAN
      redis.call('HSET', job, 'state', 'waiting', 'seq', seq)
      redis.call('HDEL', job, 'due')
      redis.call('ZADD', KEYS[2], waiting_score(redis.call('HGET', job, 'priority'), seq), id)
      moved = moved + 1
    end
  end
end
wake(KEYS[4], moved)
return moved
