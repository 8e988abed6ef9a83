-- STOP: a durable stop of a job (a parent: every child). ARGV[3] = job id, ARGV[4] = reason.
-- A NotStarted child is Stopped at once (it will never run); a running one turns Stopping and
-- its worker hears EV.STOP; one whose worker is gone is Stopped. Returns {state, due...}.
local function stop_child(cid, reason)
  local k = K.job(cid)
  local f = fields(k, 'state', 'worker', 'stop', 'stop_reason')
  if not f.state or FIN[f.state] then return end
  -- the first stop's reason stands (a cold shutdown's, not the terminate that follows it)
  if f.stop == '1' and given(f.stop_reason) then reason = f.stop_reason end
  redis.call('HSET', k, 'stop', '1', 'stop_reason', reason)
  if f.state == S.NOT_STARTED then settle(cid, S.STOPPED, reason) return end
  if not f.worker or not worker_alive(f.worker) then
    settle(cid, S.STOPPED, reason .. ' (its worker is gone)')
    return
  end
  if f.state ~= S.STOPPING then
    local parent = move(cid, S.STOPPING)
    if given(parent) then refresh_parent(parent) end
  end
  publish(cid, EV.STOP)
end

local id, reason = ARGV[3], ARGV[4]
if ARGV[5] == 'queued' or ARGV[5] == 'refused' then
  -- ARGV[3] is a child's InstanceId, and only a child that has not started changes:
  -- 'queued': a revoke from Celery (Flower's Revoke, without terminate) Stops it (Celery's
  -- revoke leaves a running task be), here, where any worker's record holds: a revoke is
  -- kept in the memory of the workers alive when it is sent, so one sent while the child's
  -- own worker was down was lost, and the child ran when its worker came back (celery#8888);
  -- 'refused': its worker refused its message, the one the fleet sent (a signer it does not
  -- trust), or met it expired (its start timeout passed): it Fails with why, where it
  -- waited NotStarted for ever; a stale copy of a child that runs changes nothing
  local cid = id_of(id)
  if not cid then return result('Missing') end
  local f = fields(K.job(cid), 'state', 'parent', 'location')
  if f.state ~= S.NOT_STARTED or not given(f.parent) then return result(f.state or 'Missing') end
  if ARGV[5] == 'refused' then
    -- ARGV[6]: the location whose queue it came from; a copy moved onto another host's
    -- queue and refused there says nothing of this child
    if f.location ~= ARGV[6] then return result(f.state) end
    settle(cid, S.FAILED, reason)
    return result(S.FAILED)
  end
  stop_child(cid, reason)
  return result(S.STOPPED)
end
return result(on_job(id, function(cid) stop_child(cid, reason) end, function(k)
  redis.call('HSET', k, 'stop', '1', 'stop_reason', reason)
  redis.call('DEL', K.pending(id))
end))
