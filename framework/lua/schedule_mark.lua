-- Note a schedule's progress: its newest tick accounted for (A.tick_ms) only
-- ever grows, whichever consumer comes last; A.job (the job a tick or a run
-- enqueued, or '') becomes its last job, fired at A.fired_ms. The state
-- expires A.ttl_ms after its last note (a paused one: not before its pause's
-- longer life), so a schedule taken out of the config leaves nothing behind.
-- Returns the newest tick now noted.
local bad = wrong_type(K.schedule, 'hash')
if bad then return bad end
local tick = tonumber(A.tick_ms)
local last = tonumber(redis.call('HGET', K.schedule, 'last'))
if tick >= 0 and (last == nil or tick > last) then
  redis.call('HSET', K.schedule, 'last', tick)
  last = tick
end
if A.job ~= '' then
  redis.call('HSET', K.schedule, 'last_job', A.job, 'last_fired', A.fired_ms)
end
-- A paused schedule keeps the longer life its pause gave it (framework/ticks.py)
local ttl = tonumber(A.ttl_ms)
if redis.call('HEXISTS', K.schedule, 'paused') == 1 then
  ttl = math.max(ttl, redis.call('PTTL', K.schedule))
end
redis.call('PEXPIRE', K.schedule, ttl)
return last or -1
