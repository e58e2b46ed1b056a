-- Extend the leases of the jobs this caller still holds (rows: id, token).
-- Returns the ids that are no longer held (recovered, timed out or removed).
local deadline = now_ms() + tonumber(A.lease_ms)
local lost = {}
for row in rows() do
  if redis.call('HGET', A.job_prefix .. row.id, 'token') == row.token
      and redis.call('ZSCORE', K.active, row.id) then
    redis.call('ZADD', K.active, deadline, row.id)
  else
    lost[#lost + 1] = row.id
  end
end
return lost
