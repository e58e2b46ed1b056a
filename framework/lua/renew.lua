-- Extend the leases of the jobs this caller still holds (rows: id, token).
-- Returns {lost, cancelled}: the ids no longer held (recovered, timed out or
-- removed, or a key that is no longer a job record), and those held whose
-- cancel was requested (the caller stops them).
local bad = wrong_type(K.active, 'zset')
if bad then return bad end
local deadline = now_ms() + tonumber(A.lease_ms)
local lost, cancelled = {}, {}
for row in rows() do
  local f = redis.pcall('HMGET', A.job_prefix .. row.id, 'token', 'cancel')
  if not f.err and f[1] == row.token and redis.call('ZSCORE', K.active, row.id) then
    redis.call('ZADD', K.active, deadline, row.id)
    if f[2] then cancelled[#cancelled + 1] = row.id end
  else
    lost[#lost + 1] = row.id
  end
end
return {lost, cancelled}
