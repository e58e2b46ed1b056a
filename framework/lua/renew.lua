-- Extend the leases of the jobs this caller still holds.
-- KEYS: active
-- ARGV: job key prefix, lease_ms, then pairs of (id, token)
-- Returns the ids that are no longer held (recovered, timed out or removed).
local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', ARGV[1] .. id, 'token') == token and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
