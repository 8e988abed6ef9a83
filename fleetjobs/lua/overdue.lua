-- OVERDUE: the children sent to these locations (ARGV[3], comma-separated) whose message is
-- lost: sent before the oldest message still waiting on the location's queue (or that queue
-- is empty; inq's scores are Redis's clock at the push, so in queue order), reserved by no
-- worker (its delivery tag is not in kombu's unacked hash) and not on the queue (its kept
-- message, byte for byte, is not in the list: a message kombu restored after a worker's
-- death is re-encoded, so it may be taken for lost and pushed again; the claim runs it once).
-- A worker can hold a message a moment between taking it and claiming its job: the caller
-- re-sends only what stays overdue for a lease (workers.redeliver). An entry whose child no
-- longer waits for its message, or has no kept message to push, is dropped.
-- ARGV[4] = at most this many per location. Returns {id, iid, id, iid, ...}.
-- Only the locations in inqlocs are looked at: an idle worker's look is one command, however
-- many locations it serves; a location whose inq is empty leaves inqlocs.
local out = {}
local limit = tonumber(ARGV[4])
local all = {}
for loc in string.gmatch(ARGV[3], '[^,]+') do all[#all + 1] = loc end
local busy = {}
-- one SMISMEMBER for up to 4,000 locations (CHUNK's 500 made a worker of 1,000 send two)
each_chunk(all, function(part)
  local member = redis.call('SMISMEMBER', K.inqlocs, unpack(part))
  for j, loc in ipairs(part) do
    if member[j] == 1 then busy[#busy + 1] = loc end
  end
end, 4000)
for _, loc in ipairs(busy) do
  local inq, queue = K.inq(loc), K.queue(loc)
  local ceiling = '+inf'
  local tail = redis.call('LINDEX', queue, -1)  -- the next message out (kombu BRPOPs)
  if tail then
    local ok, msg = pcall(cjson.decode, tail)
    local tid = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
    local score = type(tid) == 'string' and redis.call('ZSCORE', inq, tid)
    -- a message of a child no longer waiting (stopped, a copy already claimed) or not the
    -- fleet's tells nothing of when it was sent: look again once it has gone
    ceiling = score and ('(' .. score) or nil
  end
  if redis.call('ZCARD', inq) == 0 then
    redis.call('SREM', K.inqlocs, loc)  -- (a send meanwhile cannot race: scripts are atomic)
    ceiling = nil
  end
  if ceiling then
    for _, iid in ipairs(redis.call('ZRANGEBYSCORE', inq, '-inf', ceiling, 'LIMIT', 0, limit)) do
      local id, where, kept = awaiting(iid)
      if id and where == loc then
        local ok, doc = pcall(cjson.decode, kept)
        local tag = ok and type(doc) == 'table' and type(doc.properties) == 'table'
          and doc.properties.delivery_tag
        -- (a confined worker's kombu keeps them on its location: fleetjobs.celery_app)
        local reserved = tag and (redis.call('HEXISTS', K.unacked, tostring(tag)) == 1
          or redis.call('HEXISTS', K.loc_unacked(loc), tostring(tag)) == 1)
        if not reserved and not redis.call('LPOS', queue, kept) then
          out[#out + 1] = id
          out[#out + 1] = iid
        end
      else
        redis.call('ZREM', inq, iid)
      end
    end
  end
end
return out
