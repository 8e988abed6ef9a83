-- SUSPEND: ask a job (a parent: every unfinished child) to hold at its next checkpoint.
-- ARGV[3] = job id. A running child turns Suspending until its action reaches a checkpoint
-- (park.lua); one not running yet, or Blocked, keeps the request and holds at its first
-- checkpoint. The field 'suspend' is '1' while asked, '2' once held. Returns {state}.
local function suspend_child(cid)
  local k = K.job(cid)
  local f = fields(k, 'state', 'stop', 'suspend', 'parent')
  if not f.state or FIN[f.state] or f.stop == '1' then return end
  if given(f.suspend) then return end
  redis.call('HSET', k, 'suspend', '1')
  if f.state == S.RUNNING then
    move(cid, S.SUSPENDING)
    publish(cid, EV.STATE)
    if given(f.parent) then refresh_parent(f.parent) end
  end
end

return {on_job(ARGV[3], suspend_child, function(k) redis.call('HSET', k, 'suspend', '1') end)}
