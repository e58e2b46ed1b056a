-- Failed jobs back to waiting with a fresh set of attempts (and, for a parent, a
-- fresh count of children: its run links them again): the given ids, or
-- the oldest A.limit failed jobs after the first A.skip when no rows are given
-- (callers loop in batches, skipping the corrupt ones earlier batches kept).
-- A job whose record is corrupt stays failed, with the reason; an id without
-- a record is dropped. Returns {moved, {id, reason, ...} of the jobs kept}.
local bad = wrong_type(K.failed, 'zset', K.waiting, 'zset', K.wake, 'list') or not_counter(K.seq)
if bad then return bad end
local ids = given_ids(function()
  local skip = tonumber(A.skip)
  return redis.call('ZRANGE', K.failed, skip, skip + tonumber(A.limit) - 1)
end)
local moved, kept = 0, {}
for _, id in ipairs(ids) do
  if redis.call('ZSCORE', K.failed, id) then
    local job = A.job_prefix .. id
    local _, kind, reason = read_job(job, {})
    if reason then
      if kind == 'hash' then
        redis.call('HSET', job, 'error', 'corrupt record: ' .. reason
          .. '; correct the field (HSET) and retry the job, or remove it')
      end
      kept[#kept + 1] = id
      kept[#kept + 1] = reason
    else
      redis.call('ZREM', K.failed, id)
      if kind == 'hash' then
        redis.call('HDEL', job, 'attempts', 'stalls', 'error', 'traceback', 'result', 'progress',
          'started', 'consumer', 'state', 'finished', 'due', 'cancel', 'children',
          'children_completed', 'children_failed', 'follow_up')
        redis.call('DEL', job .. LOGS, job .. CHILDREN)
        take_key_again(job, id)
        to_back_of_waiting(job, id, K.waiting, K.seq)
        moved = moved + 1
      end
    end
  end
end
wake(K.wake, moved)
return {moved, kept}
