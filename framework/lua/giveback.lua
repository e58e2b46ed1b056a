-- Jobs claimed by calls whose reply never arrived (the connection broke after
-- Redis ran the claim): rows are the claim tokens the caller used. A job
-- still held by one of them goes back to waiting at its old place, the
-- attempt not counted, instead of waiting for its lease to run out and
-- counting a stall (a cancelled one fails as cancelled, as on a requeue; a
-- corrupt one fails with the reason). Checks its keys before it writes.
-- Looks at up to A.limit active jobs. Returns how many went back.
local bad = wrong_type(K.active, 'zset', K.waiting, 'zset', K.failed, 'zset', K.wake, 'list',
  K.outbox, 'zset')
if bad then return bad end
local wanted = {}
for row in rows() do wanted[row.token] = true end
local back, woken = 0, 0
local ids = redis.call('ZRANGE', K.active, 0, tonumber(A.limit) - 1)
for _, id in ipairs(ids) do
  local job = A.job_prefix .. id
  local token = is_job(job) and redis.call('HGET', job, 'token')
  if token and wanted[token] then
    local now, precise = clock()
    redis.call('ZREM', K.active, id)
    local f, kind, reason = read_job(job, {'cancel'})
    if reason then
      quarantine(job, id, K.failed, kind, reason, precise)
    elseif f.cancel then
      fail_job(job, id, K.failed, CANCELLED, f, now, precise)
    else
      to_old_place_in_waiting(job, id, K.waiting, f)
      woken = woken + 1
    end
    back = back + 1
  end
end
wake(K.wake, woken)
return back
