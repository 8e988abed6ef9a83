-- SWEEP: ARGV[3] = grace seconds, ARGV[4] = milliseconds within which a sweep by anyone
-- (every worker and console sweeps) makes this one needless ('0' or none: sweep regardless).
-- Over every running child and every child whose start deadline passed: a child that no
-- worker started in time fails; a running child whose worker stopped heartbeating becomes
-- Disconnected (Running again if the worker returns), and fails once it has been gone for
-- the grace period. Returns {count changed, due...}.
local grace = tonumber(ARGV[3])
local every = tonumber(ARGV[4] or '0') or 0
if every > 0 and not redis.call('SET', K.swept, '1', 'NX', 'PX', every) then
  return result(0)  -- the fleet was swept a moment ago, by this process or another
end
local changed = 0
local living = {}  -- worker id -> whether it lives (common.lua), read once per sweep
local function alive_worker(w)
  if living[w] == nil then living[w] = worker_alive(w) end
  return living[w]
end
-- ends no worker will report to Flower: monitor.announce_lost sends them (bounded list)
local function lost(id)
  redis.call('RPUSH', K.lost, id)
  redis.call('LTRIM', K.lost, -10000, -1)
end
-- the state a child whose worker came back returns to: what it was doing when it went
local function back_from_disconnected(f)
  if f.stop == '1' then return S.STOPPING end
  if f.suspend == '2' then return S.SUSPENDED end
  if given(f.prompt) then return S.BLOCKED end
  if f.suspend == '1' then return S.SUSPENDING end
  return S.RUNNING
end
local function sweep_one(id)
  local k = K.job(id)
  local f = fields(k, 'state', 'deadline', 'location', 'start_timeout', 'worker', 'lost_at',
                   'parent', 'stop', 'stop_reason', 'prompt', 'suspend')
  if not f.state or FIN[f.state] then
    redis.call('SREM', K.active, id)
    redis.call('ZREM', K.deadlines, id)
    return
  end
  if f.state == S.NOT_STARTED then
    if given(f.deadline) and tonumber(NOW) > tonumber(f.deadline) then
      settle(id, S.FAILED,
        'no worker on ' .. f.location .. ' started the job within ' .. f.start_timeout .. ' s')
      lost(id)  -- no worker ran it: none will tell Flower (it showed the job PENDING for ever)
      changed = changed + 1
    end
    return
  end
  redis.call('ZREM', K.deadlines, id)
  local alive = given(f.worker) and alive_worker(f.worker)
  if alive then
    if f.state == S.DISCONNECTED then
      move(id, back_from_disconnected(f))
      redis.call('HDEL', k, 'lost_at')
      publish(id, EV.STATE)
      if given(f.parent) then refresh_parent(f.parent) end
      changed = changed + 1
    end
    return
  end
  if f.stop == '1' then
    settle(id, S.STOPPED, (f.stop_reason or 'stopped') .. ' (its worker is gone)')
    lost(id)
    changed = changed + 1
  elseif f.state ~= S.DISCONNECTED then
    move(id, S.DISCONNECTED)
    redis.call('HSET', k, 'lost_at', NOW)
    publish(id, EV.END)
    if given(f.parent) then refresh_parent(f.parent) end
    changed = changed + 1
  elseif tonumber(NOW) - tonumber(f.lost_at or NOW) >= grace then
    settle(id, S.FAILED, 'host ' .. f.location .. ' stopped answering while the job ran (worker '
      .. f.worker .. ' gone for ' .. grace .. ' s); it may have done part of its work')
    lost(id)
    changed = changed + 1
  end
end
for _, id in ipairs(redis.call('SMEMBERS', K.active)) do sweep_one(id) end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', NOW)) do sweep_one(id) end
release_due_waves()  -- rollout.lua: delayed waves (--batch-wait)
return result(changed)
