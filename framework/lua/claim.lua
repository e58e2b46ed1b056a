-- Take the best waiting job (see take() in _lib.lua).
-- KEYS: waiting, active, paused, limiter
-- ARGV: job key prefix, lease_ms, token, consumer, rate_max (0 = none), rate_per_ms
-- Returns {'paused'} | {'empty'} | {'limited', wait_ms} | {'job', id, data, attempts, max_attempts}
return take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
