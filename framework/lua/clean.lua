-- Delete up to `limit` jobs of a finished set that ended more than `age_ms` ago.
-- KEYS: set (completed | failed)
-- ARGV: job key prefix, age_ms, limit
-- Returns the number deleted (callers loop in batches until it is below limit).
local cutoff = now_ms() - tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':logs')
end
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return #ids
