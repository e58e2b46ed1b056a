-- Failed jobs back to waiting with a fresh set of attempts: the given ids, or
-- the oldest A.limit failed jobs when no rows are given (callers loop in batches).
-- Returns the number moved.
local ids = given_ids(function()
  return redis.call('ZRANGE', K.failed, 0, tonumber(A.limit) - 1)
end)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', K.failed, id) == 1 then
    local job = A.job_prefix .. id
    if is_job(job) then
      redis.call('HDEL', job, 'attempts', 'stalls', 'error', 'traceback', 'result', 'progress',
        'started', 'consumer', 'state', 'finished', 'due', 'cancel')
      redis.call('DEL', job .. LOGS)
      to_back_of_waiting(job, id, K.waiting, K.seq)
      moved = moved + 1
    end
  end
end
wake(K.wake, moved)
return moved
