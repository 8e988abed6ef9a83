-- RESEND: children whose message was lost (ARGV[3...] = their InstanceIds, from overdue.lua):
-- each one still waiting for its message, and not back on its queue meanwhile, gets the
-- message its console made pushed onto its location's queue again, and counts as sent now.
-- Returns how many were pushed.
local pushed = 0
for i = 3, #ARGV do
  local iid = ARGV[i]
  local id, where, msg = awaiting(iid)
  if id and not redis.call('LPOS', K.queue(where), msg) then
    redis.call('ZADD', K.inq(where), server_time(), iid)
    redis.call('SADD', K.inqlocs, where)
    redis.call('LPUSH', K.queue(where), msg)
    pushed = pushed + 1
  end
end
return pushed
