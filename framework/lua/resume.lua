-- Hand out a paused queue's jobs again and wake idle workers for them.
-- Returns 1 if the queue was paused, 0 if not.
if redis.call('DEL', K.paused) == 0 then return 0 end
wake(K.wake, redis.call('ZCARD', K.waiting))
return 1
