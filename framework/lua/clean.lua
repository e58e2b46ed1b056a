-- Delete up to A.limit jobs of a finished set (K.set) that ended more than
-- A.age_ms ago. Returns the number deleted (callers loop in batches until it
-- is below the limit).
local bad = wrong_type(K.set, 'zset')
if bad then return bad end
local cutoff = now_ms() - tonumber(A.age_ms)
local ids = redis.call('ZRANGEBYSCORE', K.set, '-inf', cutoff, 'LIMIT', 0, tonumber(A.limit))
for _, id in ipairs(ids) do delete_job(id) end
if #ids > 0 then redis.call('ZREM', K.set, unpack(ids)) end
return #ids
