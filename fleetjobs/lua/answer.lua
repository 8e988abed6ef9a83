-- ANSWER: a Blocked child gets its answer and runs again. ARGV[3] = child id, ARGV[4] = the
-- answer, ARGV[5] = the prompt number it answers ('' = whatever it asks now).
-- Returns {'Answered', state} when this answer was taken (state: Running, or Suspending);
-- {'Stale'} when the child now asks another question; {state} when it was not asking
-- (answered already by someone else, stopped, gone: 'Missing').
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
return {'Answered', redis.call('HGET', k, 'state')}
