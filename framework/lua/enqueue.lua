-- Add jobs of one handler with one set of options: one round trip per batch.
-- A record holds the handler, the payload, its creation time (A.created, the
-- producer's clock) and the options the producer set (A.options: a JSON object
-- of record fields, or ''). A delay counts on the server's clock, read only
-- then; a delayed job gets its enqueue sequence when it is promoted.
-- Ids are fresh random UUIDs made by the caller, so no record exists yet.
-- Returns the number of jobs added.
local fields = {'handler', A.handler, 'payload', '', 'created', A.created}
if A.options ~= '' then
  for name, value in pairs(cjson.decode(A.options)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end
local delay = tonumber(A.delay_ms)
local due = delay > 0 and now_ms() + delay
local ready = 0
for row in rows() do
  fields[4] = row.payload
  redis.call('HSET', A.job_prefix .. row.id, unpack(fields))
  if due then
    redis.call('ZADD', K.delayed, due, row.id)
  else
    local seq = redis.call('INCR', K.seq) % SEQ_SPAN
    redis.call('ZADD', K.waiting, waiting_score(A.priority, seq), row.id)
    ready = ready + 1
  end
end
wake(K.wake, ready)
return ROW_COUNT
