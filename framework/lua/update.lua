-- A running job reports progress or a log line; ignored unless the caller
-- still holds the job (so a removed job is never re-created half-empty).
-- KEYS: job, logs
-- ARGV: token, kind ('progress' | 'log'), value, max log lines
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == 'progress' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[3])
else
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
end
return 1
