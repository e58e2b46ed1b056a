-- Hand out a paused queue's jobs again and wake idle workers for them.
-- Returns 1 if the queue was paused, 0 if not.
local bad = wrong_type(K.waiting, 'zset', K.wake, 'list')
if bad then return bad end
if redis.call('DEL', K.paused) == 0 then return 0 end
wake(K.wake, redis.call('ZCARD', K.waiting))
return 1
