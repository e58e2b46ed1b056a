-- Note a schedule's progress: its newest tick accounted for (A.tick_ms) only
-- ever grows, whichever consumer comes last, unless the noted one is after
-- A.reset_above_ms (the Redis clock stepped back past it: it is set to the
-- tick given, since a tick in the future would hold every tick until then).
-- A.job (the job a tick or a run enqueued, or '') becomes its last job, fired
-- at A.fired_ms. A.spec (or '') is the schedule's timing as the config says
-- it now; A.seen_ms (or '') is noted once, when a consumer first knew the
-- schedule (an overdue schedule that never fired is judged from it). The state
-- expires A.ttl_ms after its last note (a paused one: not before its pause's
-- longer life), so a schedule taken out of the config leaves nothing behind.
-- Returns the newest tick now noted.
local bad = wrong_type(K.schedule, 'hash')
if bad then return bad end
local tick = tonumber(A.tick_ms)
local last = tonumber(redis.call('HGET', K.schedule, 'last'))
local reset = tonumber(A.reset_above_ms)
if tick >= 0 and (last == nil or tick > last or (reset ~= nil and last > reset)) then
  redis.call('HSET', K.schedule, 'last', tick)
  last = tick
end
if A.job ~= '' then
  redis.call('HSET', K.schedule, 'last_job', A.job, 'last_fired', A.fired_ms)
end
if A.spec ~= '' then
  redis.call('HSET', K.schedule, 'spec', A.spec)
end
if A.seen_ms ~= '' then
  redis.call('HSETNX', K.schedule, 'seen', A.seen_ms)
end
-- A paused schedule keeps the longer life its pause gave it (framework/ticks.py)
local ttl = tonumber(A.ttl_ms)
if redis.call('HEXISTS', K.schedule, 'paused') == 1 then
  ttl = math.max(ttl, redis.call('PTTL', K.schedule))
end
redis.call('PEXPIRE', K.schedule, ttl)
return last or -1
