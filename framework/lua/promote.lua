-- Move delayed jobs to waiting: the due ones (no rows given), or the given ids now.
-- A job whose record is corrupt goes to failed with the reason instead; an id
-- without a record is dropped. Returns the number moved to waiting.
local bad = wrong_type(K.delayed, 'zset', K.waiting, 'zset', K.failed, 'zset', K.wake, 'list',
  K.outbox, 'zset')
  or not_counter(K.seq)
if bad then return bad end
local ids = given_ids(function()
  return redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now_ms(), 'LIMIT', 0, tonumber(A.limit))
end)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', K.delayed, id) == 1 then
    local job = A.job_prefix .. id
    local _, kind, reason = read_job(job, {})
    if reason then
      quarantine(job, id, K.failed, kind, reason, now_ms())
    elseif kind == 'hash' then
      redis.call('HDEL', job, 'due', 'state')
      to_back_of_waiting(job, id, K.waiting, K.seq)
      moved = moved + 1
    end
  end
end
wake(K.wake, moved)
return moved
