-- POLL (read only): what a wait looks at each time it wakes, in one round trip. ARGV[3] = '1'
-- when one finished job ends the wait (wait -Any), ARGV[4] = the states that end it,
-- comma-separated, ARGV[5] = '1' when a job that is gone ends it too, ARGV[6..] = ids.
-- Returns {states, over, tops, kids}: each job's state (false: gone), 1 when the wait is
-- over (else 0) and then the snapshots of the jobs that ended it, with their children, as
-- load.lua gives them (so the waiter reads nothing more), else two empty lists.
local any, gone_ends = ARGV[3] == '1', ARGV[5] == '1'
local ends = {}
for s in string.gmatch(ARGV[4], '[^,]+') do ends[s] = true end
local states, done, ended = {}, {}, 0
for i = 6, #ARGV do
  local state = redis.call('HGET', K.job(ARGV[i]), 'state')
  states[i - 5] = state or false
  if state and ends[state] then table.insert(done, ARGV[i]) end
  if (state and ends[state]) or (not state and gone_ends) then ended = ended + 1 end
end
if ended == 0 or (not any and ended < #states) then return {states, 0, {}, {}} end
local tops, kids = load_jobs(done, true)
return {states, 1, tops, kids}
