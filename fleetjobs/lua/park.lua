-- PARK: a child's action reached a checkpoint while a suspend is asked: it turns Suspended
-- and holds there. ARGV[3] = child id. A held child no longer counts against its parent's
-- throttle limit: its slot goes to the next waiting child (unless the whole parent is
-- suspended), and it runs over the limit once resumed. Returns {state, due...}: 'Suspended'
-- when it must hold; anything else means go on (resumed meanwhile) or end (stopped).
local id = ARGV[3]
local k = K.job(id)
local f = fields(k, 'state', 'stop', 'suspend', 'parent', 'queued')
if not f.state then return result('Missing') end
if f.stop == '1' or FIN[f.state] then return result(f.state) end
if f.suspend ~= '1' and f.suspend ~= '2' then return result(f.state) end
if f.state == S.SUSPENDED then return result(f.state) end
if f.state ~= S.SUSPENDING and f.state ~= S.RUNNING then return result(f.state) end
redis.call('HSET', k, 'suspend', '2')
move(id, S.SUSPENDED)
publish(id, EV.END)
if given(f.parent) then
  refresh_parent(f.parent)
  if f.queued == '1' and redis.call('HGET', K.job(f.parent), 'suspend') ~= '1' then
    redis.call('HSET', k, 'queued', '')
    next_pending(f.parent)
  end
end
return result(S.SUSPENDED)
