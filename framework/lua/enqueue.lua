-- Add jobs, one round trip for the whole batch.
-- KEYS: waiting, delayed, seq, wake
-- ARGV: job key prefix, then per job 8 values:
--   id, name, data, priority, delay_ms, max_attempts, keep_completed, keep_failed
--   (keep_* = -1: the queue's setting applies)
-- Ids are fresh random UUIDs made by the caller, so no record exists yet.
-- A new record holds only what is set: attempts, stalls, due and the keep_*
-- overrides are absent until they have a value (readers take 0 / the default).
-- Returns the number of jobs added.
local now = now_ms()
local prefix = ARGV[1]
local ready = 0
for b = 2, #ARGV, 8 do
  local id, priority, delay = ARGV[b], ARGV[b + 3], tonumber(ARGV[b + 4])
  local job = prefix .. id
  local seq = redis.call('INCR', KEYS[3]) % SEQ_SPAN
  local state = delay > 0 and 'delayed' or 'waiting'
  redis.call('HSET', job, 'name', ARGV[b + 1], 'data', ARGV[b + 2], 'priority', priority,
    'seq', seq, 'max_attempts', ARGV[b + 5], 'created', now, 'state', state)
  if delay > 0 then
    local due = now + delay
    redis.call('HSET', job, 'due', due)
    redis.call('ZADD', KEYS[2], due, id)
  else
    redis.call('ZADD', KEYS[1], waiting_score(priority, seq), id)
    ready = ready + 1
  end
  local keep_completed, keep_failed = ARGV[b + 6], ARGV[b + 7]
  if keep_completed ~= '-1' or keep_failed ~= '-1' then
    redis.call('HSET', job, 'keep_completed', keep_completed, 'keep_failed', keep_failed)
  end
end
wake(KEYS[4], ready)
return (#ARGV - 1) / 8
