-- Read-only: fields of a hash, each cut to its cap (framework/peek.py).
-- Redis has no HGETRANGE, so each value is read here, on the server, and only
-- its first cap bytes are sent, with its whole length: what the caller receives
-- is bounded by the caps whatever the hash holds (50 MB in one field, a million
-- fields: only the fields asked for are read).
-- Reply: {type of the key, field, length, start, field, length, start, ...}, the
-- fields the hash has, in the order asked; just {type} when it is not a hash.
local kind = redis.call('TYPE', K.hash)['ok']
local out = {kind}
if kind ~= 'hash' then return out end
for row in rows() do
  local value = redis.call('HGET', K.hash, row.field)
  if value then
    local size = #value
    local cap = tonumber(row.cap)
    if size > cap then value = string.sub(value, 1, cap) end
    out[#out + 1] = row.field
    out[#out + 1] = size
    out[#out + 1] = value
  end
end
return out
