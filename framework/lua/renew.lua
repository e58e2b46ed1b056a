-- Extend the leases of the jobs this caller still holds (rows: id, token).
-- Returns {lost, cancelled}: the ids no longer held (recovered, timed out or
-- removed), and those held whose cancel was requested (the caller stops them).
local deadline = now_ms() + tonumber(A.lease_ms)
local lost, cancelled = {}, {}
for row in rows() do
  local token, cancel = unpack(redis.call('HMGET', A.job_prefix .. row.id, 'token', 'cancel'))
  if token == row.token and redis.call('ZSCORE', K.active, row.id) then
    redis.call('ZADD', K.active, deadline, row.id)
    if cancel then cancelled[#cancelled + 1] = row.id end
  else
    lost[#lost + 1] = row.id
  end
end
return {lost, cancelled}
