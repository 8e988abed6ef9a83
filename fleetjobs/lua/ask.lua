-- ASK: a running child asks a question and turns Blocked until someone answers.
-- ARGV[3] = child id, ARGV[4] = the prompt (JSON: question, choices, default).
-- Returns {state, prompt number}: 'Blocked' when the question now waits for an answer;
-- anything else (Stopping, a finished state) means the job must end instead of asking.
local id = ARGV[3]
local k = K.job(id)
local f = fields(k, 'state', 'stop', 'parent')
if not f.state then return {'Missing', 0} end
if f.stop == '1' or f.state ~= S.RUNNING then return {f.state, 0} end
local n = redis.call('HINCRBY', k, 'pseq', 1)
redis.call('HSET', k, 'prompt', ARGV[4])
redis.call('HDEL', k, 'answer')
move(id, S.BLOCKED)
publish(id, EV.END)
if given(f.parent) then refresh_parent(f.parent) end
return {S.BLOCKED, n}
