-- Add jobs, one round trip for the whole batch. Existing ids are left alone.
-- KEYS: waiting, delayed, seq, wake
-- ARGV: job key prefix, count, then per job 8 values:
--   id, name, data, priority, delay_ms, max_attempts, keep_completed, keep_failed
-- Returns the number of jobs created.
local now = now_ms()
local prefix, count = ARGV[1], tonumber(ARGV[2])
local created, ready = 0, 0
for i = 0, count - 1 do
  local b = 3 + i * 8
  local id = ARGV[b]
  local job = prefix .. id
  if redis.call('EXISTS', job) == 0 then
    local priority, delay = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
    local seq = redis.call('INCR', KEYS[3]) % SEQ_SPAN
    local state, due = 'waiting', ''
    if delay > 0 then state, due = 'delayed', now + delay end
    redis.call('HSET', job, 'id', id, 'name', ARGV[b + 1], 'data', ARGV[b + 2],
      'priority', priority, 'seq', seq, 'attempts', 0, 'stalls', 0,
      'max_attempts', ARGV[b + 5], 'keep_completed', ARGV[b + 6], 'keep_failed', ARGV[b + 7],
      'created', now, 'state', state, 'due', due)
    if delay > 0 then
      redis.call('ZADD', KEYS[2], due, id)
    else
      redis.call('ZADD', KEYS[1], waiting_score(priority, seq), id)
      ready = ready + 1
    end
    created = created + 1
  end
end
wake(KEYS[4], ready)
return created
