-- CREATE: a parent and its children, atomically, from one JSON document (ARGV[3]), so a
-- fan-out to 10,000 locations is one command to pack and send, not 30,000. Every value in it
-- is already text, as the registry stores it. The document: pid, name (for the name index;
-- empty for a default name, which is not indexed), action, now (text),
-- parent (its fields), children (each one's fields), deadlines ({id, deadline} of the queued
-- children with a start timeout), pending (ids waiting for a throttle slot), locations
-- (distinct), ix (its bucket in the history indexes), iids (InstanceId, Id, ...), events
-- ({channel, payload} to publish once the messages are on their queues: Celery's task-sent,
-- for Flower). ARGV[4...]: each child's Celery message, in the children's order, or none
-- (the caller sends them): arguments of their own, not in the document, which cjson would
-- decode whole. A queued child's message goes onto its location's queue here, with the job:
-- no job without its message, no message without its job.
local d = cjson.decode(ARGV[3])
-- the parent's bucket in the history indexes (common.lua's ix_add): its ordinal's, which
-- newid.lua gave with its Id
local ix = d.ix
d.parent.ix = ix
local function hset(key, t)
  local a = {}
  for k, v in pairs(t) do a[#a + 1] = k; a[#a + 1] = v end
  redis.call('HSET', key, unpack(a))
end
hset(K.job(d.pid), d.parent)
local sent = server_time()  -- the order of inq: the order messages go onto queues
for i, child in ipairs(d.children) do
  hset(K.job(child.id), child)
  local msg = ARGV[i + 3]
  if msg then redis.call('SET', K.msg(child.iid), msg) end
  if child.queued == '1' then
    if msg then redis.call('LPUSH', K.queue(child.location), msg) end
    -- sent now: on its location's list of messages out (workers.redeliver re-sends a lost one)
    redis.call('ZADD', K.inq(child.location), sent, child.iid)
    redis.call('SADD', K.inqlocs, child.location)
  end
end
local zd = {}
for _, pair in ipairs(d.deadlines) do zd[#zd + 1] = pair[1]; zd[#zd + 1] = pair[2] end
if #zd > 0 then call_chunked('ZADD', K.deadlines, zd, 2) end
if #d.pending > 0 then call_chunked('RPUSH', K.pending(d.pid), d.pending, 1) end
call_chunked('HSET', K.iids, d.iids, 2)
if d.name ~= '' then redis.call('SADD', K.names(d.name), d.pid) end  -- '': a default name
ix_add(ix, 'top', d.pid, d.now)
ix_add(ix, 'action:' .. d.action, d.pid, d.now)
for _, loc in ipairs(d.locations) do ix_add(ix, 'loc:' .. loc, d.pid, d.now) end
for _, ev in ipairs(d.events or {}) do redis.call('PUBLISH', P .. ev[1], ev[2]) end
return 1
