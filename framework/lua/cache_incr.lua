-- Add to a cache counter and keep it bounded: a counter that has no expiry yet
-- (just made, or made before counters had one) gets the TTL asked for; one that
-- has an expiry keeps it, so a counter lives its TTL from its first increment.
local n = redis.call('INCRBY', K.counter, A.amount)
if redis.call('TTL', K.counter) == -1 then
  redis.call('EXPIRE', K.counter, A.ttl)
end
return n
