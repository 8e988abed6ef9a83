-- RESEND: children whose message was lost (ARGV[3...] = their InstanceIds, from overdue.lua):
-- each one still waiting for its message gets the message its console made pushed onto its
-- location's queue again, and counts as sent now. Returns the ids of those with no kept
-- message (made before messages were kept): the caller makes and sends those itself.
local out = {}
for i = 3, #ARGV do
  local iid = ARGV[i]
  local id = redis.call('HGET', K.iids, iid)
  local f = id and fields(K.job(id), 'state', 'queued', 'location')
  if f and f.state == S.NOT_STARTED and f.queued == '1' then
    redis.call('ZADD', K.inq(f.location), 'XX', NOW, iid)
    local msg = redis.call('GET', K.msg(iid))
    if msg then
      redis.call('LPUSH', K.queue(f.location), msg)
    else
      out[#out + 1] = id
    end
  end
end
return out
