-- ANSWER: a Blocked child gets its answer and runs again. ARGV[3] = child id, ARGV[4] = the
-- answer, ARGV[5] = the prompt number it answers ('' = whatever it asks now).
-- Returns {state}: 'Running' (or 'Suspending') when this answer was taken; 'Stale' when the child now asks
-- another question; any other state means it was not asking (answered already, stopped).
local id, given_seq = ARGV[3], ARGV[5]
local k = K.job(id)
local f = fields(k, 'state', 'parent', 'pseq', 'suspend')
if not f.state then return {'Missing'} end
if f.state ~= S.BLOCKED then return {f.state} end
if given(given_seq) and given_seq ~= f.pseq then return {'Stale'} end
redis.call('HSET', k, 'answer', ARGV[4])
redis.call('HDEL', k, 'prompt')
move(id, f.suspend == '1' and S.SUSPENDING or S.RUNNING)
publish(id, EV.STATE)
if given(f.parent) then refresh_parent(f.parent) end
return {redis.call('HGET', k, 'state')}
