-- RESEND: children whose message was lost (ARGV[3...] = their InstanceIds, from overdue.lua):
-- each one still waiting for its message, and not back on its queue meanwhile, gets the
-- message its console made pushed onto its location's queue again, and counts as sent now.
-- Returns how many were pushed.
local pushed = 0
for i = 3, #ARGV do
  local iid = ARGV[i]
  local id = redis.call('HGET', K.iids, iid)
  local f = id and fields(K.job(id), 'state', 'queued', 'location')
  local msg = redis.call('GET', K.msg(iid))
  if f and f.state == S.NOT_STARTED and f.queued == '1' and msg
      and not redis.call('LPOS', K.queue(f.location), msg) then
    redis.call('ZADD', K.inq(f.location), server_time(), iid)
    redis.call('SADD', K.inqlocs, f.location)
    redis.call('LPUSH', K.queue(f.location), msg)
    pushed = pushed + 1
  end
end
return pushed
