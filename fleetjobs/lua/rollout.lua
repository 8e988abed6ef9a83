-- Rollouts (start --batch N) and the indexes of finished jobs; follows prelude.lua, whose
-- settle() calls rollout_settled and index_settled after each child it settles.
-- A rollout's parent releases its children in waves of 'batch': the next wave when every
-- child of the current one has settled (at once, or 'batch_wait' seconds later through
-- K.waves, which the sweep applies). Once more than 'max_fail' children have failed the
-- rollout halts: its children not started are Stopped and never run, running ones finish (or
-- are stopped, with 'halt_running'), and the parent's Reason says so first.

-- the parent's next wave: up to 'batch' children from its pending list, to dispatch
local function next_wave(pid)
  local pk = K.job(pid)
  local batch = tonumber(redis.call('HGET', pk, 'batch'))
  local released = 0
  for _ = 1, batch do
    if next_pending(pid) then released = released + 1 end
  end
  redis.call('HDEL', pk, 'wave_due')
  if released > 0 then
    redis.call('HINCRBY', pk, 'wave', 1)
    redis.call('HSET', pk, 'wave_left', released)
    publish(pid, EV.STATE)
  end
end

local function halt(pid, failed, hosts)
  local pk = K.job(pid)
  local why = 'rollout halted after ' .. failed .. (failed == 1 and ' failure' or ' failures')
    .. ': hosts ' .. hosts
  redis.call('HSET', pk, 'halted', why)
  redis.call('DEL', K.pending(pid))
  redis.call('ZREM', K.waves, pid)
  redis.call('HDEL', pk, 'wave_due')
  local f = fields(pk, 'children', 'halt_running')
  for cid in string.gmatch(f.children or '', '[^,]+') do
    local ck = K.job(cid)
    local c = fields(ck, 'state', 'worker')
    if c.state == S.NOT_STARTED then
      redis.call('HSET', ck, 'stop', '1', 'stop_reason', why)
      settle(cid, S.STOPPED, why)
    elseif f.halt_running == '1' and (c.state == S.RUNNING or c.state == S.DISCONNECTED) then
      redis.call('HSET', ck, 'stop', '1', 'stop_reason', why)
      if not given(c.worker) or not worker_alive(c.worker) then
        settle(cid, S.STOPPED, why .. ' (its worker is gone)')
      else
        move(cid, S.STOPPING)
        publish(cid, EV.STOP)
      end
    end
  end
  refresh_parent(pid)
end

-- a child of parent pid settled: count its failure, halt or release the next wave.
-- Returns false when the parent is no rollout (its throttle applies instead).
rollout_settled = function(pid, id, state, location, queued)
  local pk = K.job(pid)
  local r = fields(pk, 'batch', 'max_fail', 'halted', 'stop', 'batch_wait', 'failed_hosts')
  if not given(r.batch) then return false end
  local halted = given(r.halted)
  if state == S.FAILED then
    local failed = tonumber(redis.call('HGET', pk, 'c:' .. S.FAILED) or '0')
    local hosts = r.failed_hosts
    if failed <= 20 then
      hosts = given(hosts) and (hosts .. ', ' .. (location or '?')) or (location or '?')
      redis.call('HSET', pk, 'failed_hosts', hosts)
    end
    if given(r.max_fail) and not halted and failed > tonumber(r.max_fail) then
      halt(pid, failed, hosts)
      halted = true
    end
  end
  if queued then
    local left = redis.call('HINCRBY', pk, 'wave_left', -1)
    if left <= 0 and not halted and r.stop ~= '1'
        and redis.call('LLEN', K.pending(pid)) > 0 then
      local wait = tonumber(r.batch_wait or '0') or 0
      if wait > 0 then
        local due = tonumber(NOW) + wait
        redis.call('HSET', pk, 'wave_due', due)
        redis.call('ZADD', K.waves, due, pid)
      else
        next_wave(pid)
      end
    end
  end
  local p = fields(pk, 'state', 'reason', 'halted')
  if given(p.halted) and FIN[p.state] and string.sub(p.reason or '', 1, #p.halted) ~= p.halted then
    redis.call('HSET', pk, 'reason', given(p.reason) and (p.halted .. '; ' .. p.reason) or p.halted)
  end
  return true
end

-- the delayed waves now due (--batch-wait): run by the sweep
local function release_due_waves()
  for _, pid in ipairs(redis.call('ZRANGEBYSCORE', K.waves, '-inf', NOW)) do
    redis.call('ZREM', K.waves, pid)
    local p = fields(K.job(pid), 'state', 'halted', 'stop')
    if p.state and not FIN[p.state] and not given(p.halted) and p.stop ~= '1' then
      next_wave(pid)
    end
  end
end

-- a top-level job that ended Failed joins the index get --failed reads (p: its state,
-- created and ix as the caller just read them, if it did)
index_settled = function(pid, p)
  p = p or fields(K.job(pid), 'state', 'created', 'ix')
  if p.state == S.FAILED then ix_add(p.ix, 'failed', pid, p.created or NOW) end
end
