-- Add jobs of one handler with one set of options: one round trip per batch.
-- A record holds the handler, the payload and the options the producer set
-- (A.options: a JSON object of record fields, or ''); its creation time is in
-- its id (framework/ids.py). A delay counts on the server's clock, read only
-- then; a delayed job gets its enqueue sequence when it is promoted.
-- Ids are fresh time-ordered UUIDs made by the caller. A row with a key (enqueue
-- key=...) stores nothing while the key is held (A.key_prefix .. key -> the
-- id of an unfinished job, or of one finished less than its key_ttl ago): the
-- row gets that job's id instead; two rows of one call with one key make one
-- job. Check first: the keys it writes, then every row's record key, which
-- must be free, or hold this very call's record, the same handler and payload
-- under the same fresh id (a retry after a lost answer: skipped, so it is
-- stored once), and every row's key index. Anything else
-- there stops the whole batch with an error naming it, and nothing is written.
-- Returns {added, row, id, parent, state, ...}: the number of jobs this call
-- added, then each row (1-based) whose key was held, with the holder's id, its
-- parent ('' for none) and whether it finished ('completed', 'failed', or ''),
-- so a parent's spawn knows which holders are its children (framework/fanin.py).
local delay = tonumber(A.delay_ms)
local bad
if delay > 0 then
  bad = wrong_type(K.delayed, 'zset')
else
  bad = wrong_type(K.waiting, 'zset', K.wake, 'list') or not_counter(K.seq)
end
if bad then return bad end
local todo, held, taken = {}, {}, {}
local n = 0
for row in rows() do
  n = n + 1
  local key = A.job_prefix .. row.id
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'none' then
    local mine = kind == 'hash'
      and redis.call('HGET', key, 'handler') == A.handler
      and redis.call('HGET', key, 'payload') == row.payload
    if not mine then return redis.error_reply('HUEYARD_EXISTS ' .. kind .. ' ' .. key) end
  elseif row.key ~= '' then
    local index = A.key_prefix .. row.key
    local holder = taken[row.key]
    if not holder then
      local index_kind = redis.call('TYPE', index).ok
      if index_kind ~= 'none' and index_kind ~= 'string' then
        return redis.error_reply('HUEYARD_WRONGTYPE ' .. index_kind .. ' string ' .. index)
      end
      holder = redis.call('GET', index)
      -- An index that outlived its job without a key_ttl (the record was deleted
      -- by hand) holds nothing: it is taken over.
      if holder and redis.call('PTTL', index) == -1
          and redis.call('EXISTS', A.job_prefix .. holder) == 0 then
        holder = false
      end
    end
    if holder then
      local parent, state = '', ''
      if not taken[row.key] then
        local record = A.job_prefix .. holder
        parent = is_job(record) and redis.call('HGET', record, 'parent') or ''
        if in_set(K.completed, holder) then
          state = 'completed'
        elseif in_set(K.failed, holder) then
          state = 'failed'
        end
      end
      held[#held + 1] = n
      held[#held + 1] = holder
      held[#held + 1] = parent
      held[#held + 1] = state
    else
      taken[row.key] = row.id
      todo[#todo + 1] = row
    end
  else
    todo[#todo + 1] = row
  end
end
local fields = {'handler', A.handler, 'payload', ''}
if A.options ~= '' then
  for name, value in pairs(cjson.decode(A.options)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end
local function store(row)
  fields[4] = row.payload
  local job = A.job_prefix .. row.id
  redis.call('HSET', job, unpack(fields))
  if row.key ~= '' then
    redis.call('HSET', job, 'key', row.key)
    redis.call('SET', A.key_prefix .. row.key, row.id)
  end
end
if delay > 0 then
  local due = now_ms() + delay
  for _, row in ipairs(todo) do
    store(row)
    redis.call('ZADD', K.delayed, due, row.id)
  end
elseif #todo > 0 then
  local seq = redis.call('INCRBY', K.seq, #todo) - #todo
  for _, row in ipairs(todo) do
    seq = seq + 1
    store(row)
    redis.call('ZADD', K.waiting, waiting_score(A.priority, seq % SEQ_SPAN), row.id)
  end
  wake(K.wake, #todo)
end
return {#todo, unpack(held)}
