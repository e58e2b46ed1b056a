-- Read-only: the newest A.count elements of a list, each cut to A.cap bytes
-- (framework/peek.py), oldest first.
-- Reply: {type of the key, length of the list, size, start, size, start, ...};
-- {type, 0} when it is not a list.
local kind = redis.call('TYPE', K.list)['ok']
if kind ~= 'list' then return {kind, 0} end
local out = {kind, redis.call('LLEN', K.list)}
local count = tonumber(A.count)
if count < 1 then return out end
local cap = tonumber(A.cap)
for _, line in ipairs(redis.call('LRANGE', K.list, -count, -1)) do
  out[#out + 1] = #line
  out[#out + 1] = string.sub(line, 1, cap)
end
return out
