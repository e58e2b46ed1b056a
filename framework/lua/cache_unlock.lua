-- Delete a cache loader's lock only if it still holds our token: a holder
-- whose lock expired must not release the next holder's lock.
if redis.call('GET', K.lock) == A.token then
  return redis.call('DEL', K.lock)
end
return 0
