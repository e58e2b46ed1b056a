-- Jobs whose lease expired (their consumer died) go back to waiting at their
-- old place, counting a stall; past max_stalls they fail as stalled.
-- KEYS: active, waiting, failed, wake
-- ARGV: job key prefix, max_stalls, limit, default keep_failed, metrics key prefix, metrics ttl
-- Returns {recovered, failed}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local recovered, failed = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[1] .. id
  if is_job(job) then
    local stalls = redis.call('HINCRBY', job, 'stalls', 1)
    if stalls > tonumber(ARGV[2]) then
      redis.call('HSET', job, 'state', 'failed', 'finished', now, 'token', '', 'traceback', '',
        'error', 'stalled: its consumer stopped renewing the lease ' .. stalls .. ' times')
      bump(ARGV[5], now, 'failed', tonumber(ARGV[6]))
      file_finished(KEYS[3], job, id, 'failed', now, ARGV[4], ARGV[1])
      failed = failed + 1
    else
      to_old_place_in_waiting(job, id, KEYS[2])
      recovered = recovered + 1
    end
  end
end
wake(KEYS[4], recovered)
return {recovered, failed}
