-- RESUME: a suspended job (a parent: every child) goes on. ARGV[3] = job id. A held child
-- turns Running and its action leaves the checkpoint; a pending request is withdrawn.
-- Returns {state}.
local function resume_child(cid)
  local k = K.job(cid)
  local f = fields(k, 'state', 'suspend', 'parent', 'stop')
  if not f.state or FIN[f.state] then return end
  redis.call('HDEL', k, 'suspend')
  if f.stop == '1' then return end
  if f.state == S.SUSPENDED or f.state == S.SUSPENDING then
    move(cid, S.RUNNING)
    publish(cid, EV.STATE)
    if given(f.parent) then refresh_parent(f.parent) end
  end
end

return {on_job(ARGV[3], resume_child, function(k) redis.call('HDEL', k, 'suspend') end)}
