-- Add jobs of one handler with one set of options: one round trip per batch.
-- A record holds the handler, the payload, the creation time and the options
-- the producer set (A.options: a JSON object of record fields, or '').
-- Ids are fresh random UUIDs made by the caller, so no record exists yet.
-- A delayed job gets its enqueue sequence when it is promoted.
-- Returns the number of jobs added.
local now = now_ms()
local fields = {'handler', A.handler, 'payload', '', 'created', now}
if A.options ~= '' then
  for name, value in pairs(cjson.decode(A.options)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end
local delay = tonumber(A.delay_ms)
local ready = 0
for row in rows() do
  fields[4] = row.payload
  redis.call('HSET', A.job_prefix .. row.id, unpack(fields))
  if delay > 0 then
    redis.call('ZADD', K.delayed, now + delay, row.id)
  else
    local seq = redis.call('INCR', K.seq) % SEQ_SPAN
    redis.call('ZADD', K.waiting, waiting_score(A.priority, seq), row.id)
    ready = ready + 1
  end
end
wake(K.wake, ready)
return ROW_COUNT
