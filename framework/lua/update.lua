-- A running job reports progress or a log line; ignored unless the caller
-- still holds the job (so a removed job is never re-created half-empty).
-- A log key of another type is an error naming it, with nothing written.
local token = redis.pcall('HGET', K.job, 'token')
if token ~= A.token then return 0 end
if A.kind == 'progress' then
  redis.call('HSET', K.job, 'progress', A.value)
else
  local bad = wrong_type(K.logs, 'list')
  if bad then return bad end
  redis.call('RPUSH', K.logs, A.value)
  redis.call('LTRIM', K.logs, -tonumber(A.max_lines), -1)
end
return 1
