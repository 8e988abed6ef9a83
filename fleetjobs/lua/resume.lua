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

local id = ARGV[3]
local k = K.job(id)
local f = fields(k, 'state', 'children')
if not f.state then return {'Missing'} end
if FIN[f.state] then return {f.state} end
if given(f.children) then
  redis.call('HDEL', k, 'suspend')
  for cid in string.gmatch(f.children, '[^,]+') do resume_child(cid) end
  refresh_parent(id)
else
  resume_child(id)
end
return {redis.call('HGET', k, 'state')}
