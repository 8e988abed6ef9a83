-- FINISH: a worker settles the child it ran. ARGV[3] = child id, ARGV[4] = Completed or
-- Failed, ARGV[5] = reason. A stop asked meanwhile wins: the child is Stopped.
-- Returns {final state, due...}.
local id = ARGV[3]
local f = fields(K.job(id), 'state', 'stop', 'stop_reason')
if not f.state then return result('Missing') end
if FIN[f.state] then return result(f.state) end
local state, reason = ARGV[4], ARGV[5]
if f.stop == '1' then state, reason = S.STOPPED, f.stop_reason end
settle(id, state, reason)
return result(state)
