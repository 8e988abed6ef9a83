-- OVERDUE: the children sent to these locations (ARGV[3], comma-separated) that no worker has
-- claimed although their message waits on no queue: each was sent before the oldest message
-- still waiting on its location's queue, or that queue is empty. Such a message is reserved
-- by a live worker (kombu's unacked hash, leased), in a worker that is claiming it right now,
-- or lost: a worker killed between taking it off the queue and claiming it, a sender killed
-- between marking a child sent and sending it. workers.redeliver tells these apart and
-- re-sends the lost. An entry whose child no longer waits for its message is dropped.
-- ARGV[4] = at most this many per location. Returns {id, iid, id, iid, ...}.
local out = {}
local limit = tonumber(ARGV[4])
for loc in string.gmatch(ARGV[3], '[^,]+') do
  local inq = K.inq(loc)
  local ceiling = '+inf'
  local tail = redis.call('LINDEX', K.queue(loc), -1)  -- the next message out (kombu BRPOPs)
  if tail then
    local ok, msg = pcall(cjson.decode, tail)
    local tid = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
    local score = type(tid) == 'string' and redis.call('ZSCORE', inq, tid)
    -- a message of a child no longer waiting (stopped, a copy already claimed) or not the
    -- fleet's tells nothing of when it was sent: look again once it has gone
    ceiling = score and ('(' .. score) or nil
  end
  if ceiling then
    for _, iid in ipairs(redis.call('ZRANGEBYSCORE', inq, '-inf', ceiling, 'LIMIT', 0, limit)) do
      local id = redis.call('HGET', K.iids, iid)
      local f = id and fields(K.job(id), 'state', 'queued', 'location')
      if f and f.state == S.NOT_STARTED and f.queued == '1' and f.location == loc then
        out[#out + 1] = id
        out[#out + 1] = iid
      else
        redis.call('ZREM', inq, iid)
      end
    end
  end
end
return out
