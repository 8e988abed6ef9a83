-- STOP: a durable stop of a job (a parent: every child). ARGV[3] = job id, ARGV[4] = reason.
-- A NotStarted child is Stopped at once (it will never run); a running one turns Stopping and
-- its worker hears EV.STOP; one whose worker is gone is Stopped. Returns {state, due...}.
local function stop_child(cid, reason)
  local k = K.job(cid)
  local f = fields(k, 'state', 'worker')
  if not f.state or FIN[f.state] then return end
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
return result(on_job(id, function(cid) stop_child(cid, reason) end, function(k)
  redis.call('HSET', k, 'stop', '1', 'stop_reason', reason)
  redis.call('DEL', K.pending(id))
end))
