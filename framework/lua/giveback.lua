-- Jobs claimed by calls whose reply never arrived (the connection broke after
-- Redis ran the claim): rows are the claim tokens the caller used. A job
-- still held by one of them goes back to waiting at its old place, the
-- attempt not counted, instead of waiting for its lease to run out and
-- counting a stall (a cancelled one fails as cancelled, as on a requeue).
-- Looks at up to A.limit active jobs. Returns how many went back.
local wanted = {}
for row in rows() do wanted[row.token] = true end
local back = 0
local ids = redis.call('ZRANGE', K.active, 0, tonumber(A.limit) - 1)
for _, id in ipairs(ids) do
  local job = A.job_prefix .. id
  if is_job(job) then
    local token, priority, seq, cancel, keep = unpack(redis.call('HMGET', job, 'token',
      'priority', 'seq', 'cancel', 'keep_failed'))
    if token and wanted[token] then
      redis.call('ZREM', K.active, id)
      if cancel then
        local now, precise = clock()
        fail_job(job, id, K.failed, CANCELLED, keep, now, precise)
      else
        to_old_place_in_waiting(job, id, K.waiting, priority, seq)
        wake(K.wake, 1)
      end
      back = back + 1
    end
  end
end
return back
