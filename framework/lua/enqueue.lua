-- Add jobs of one handler with one set of options: one round trip per batch.
-- A record holds the handler, the payload, its creation time (A.created, the
-- producer's clock) and the options the producer set (A.options: a JSON object
-- of record fields, or ''). A delay counts on the server's clock, read only
-- then; a delayed job gets its enqueue sequence when it is promoted.
-- Ids are fresh random UUIDs made by the caller. Check first: the keys it
-- writes, then every row's record key, which must be free, or hold this very
-- call's record (a retry after a lost answer: skipped, so it is stored once).
-- Any other key there stops the whole batch with an error naming it, and
-- nothing is written. Returns the number of jobs added by this call.
local delay = tonumber(A.delay_ms)
local bad
if delay > 0 then
  bad = wrong_type(K.delayed, 'zset')
else
  bad = wrong_type(K.waiting, 'zset', K.wake, 'list') or not_counter(K.seq)
end
if bad then return bad end
local todo = {}
for row in rows() do
  local key = A.job_prefix .. row.id
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    todo[#todo + 1] = row
  else
    local mine = kind == 'hash'
      and redis.call('HGET', key, 'created') == A.created
      and redis.call('HGET', key, 'handler') == A.handler
    if not mine then return redis.error_reply('HUEYARD_EXISTS ' .. kind .. ' ' .. key) end
  end
end
local fields = {'handler', A.handler, 'payload', '', 'created', A.created}
if A.options ~= '' then
  for name, value in pairs(cjson.decode(A.options)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end
if delay > 0 then
  local due = now_ms() + delay
  for _, row in ipairs(todo) do
    fields[4] = row.payload
    redis.call('HSET', A.job_prefix .. row.id, unpack(fields))
    redis.call('ZADD', K.delayed, due, row.id)
  end
elseif #todo > 0 then
  local seq = redis.call('INCRBY', K.seq, #todo) - #todo
  for _, row in ipairs(todo) do
    seq = seq + 1
    fields[4] = row.payload
    redis.call('HSET', A.job_prefix .. row.id, unpack(fields))
    redis.call('ZADD', K.waiting, waiting_score(A.priority, seq % SEQ_SPAN), row.id)
  end
  wake(K.wake, #todo)
end
return #todo
