-- Move delayed jobs to waiting: the due ones (no rows given), or the given ids now.
-- Returns the number moved.
local ids = given_ids(function()
  return redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now_ms(), 'LIMIT', 0, tonumber(A.limit))
end)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', K.delayed, id) == 1 then
    local job = A.job_prefix .. id
    if is_job(job) then
      redis.call('HDEL', job, 'due', 'state')
      to_back_of_waiting(job, id, K.waiting, K.seq)
      moved = moved + 1
    end
  end
end
wake(K.wake, moved)
return moved
