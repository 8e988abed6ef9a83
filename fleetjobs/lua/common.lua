-- Shared by every script, after the generated header.

-- HMGET by name: fields(key, 'state', 'parent').state
local function fields(key, ...)
  local names = {...}
  local values = redis.call('HMGET', key, unpack(names))
  local out = {}
  for i, name in ipairs(names) do out[name] = values[i] end
  return out
end

local function given(v) return v and v ~= '' end

-- the Id of the job whose InstanceId is iid, or nil: read from iid when it carries one
-- (fleetjobs.model.new_instance_id: version 8, the Id in its last 12 hex digits) and that
-- job's InstanceId is iid; else from the iids index (InstanceIds made before, or by hand)
local function id_of(iid)
  local tail = string.match(iid, '^%x+%-%x+%-8%x%x%x%-%x+%-(%x%x%x%x%x%x%x%x%x%x%x%x)$')
  if tail then
    local id = string.format('%d', tonumber(tail, 16))
    if redis.call('HGET', K.job(id), 'iid') == iid then return id end
  end
  return redis.call('HGET', K.iids, iid) or nil
end

-- Long lists go to Redis in runs: Lua's stack is bounded (unpack of some 8,000 fails).
local CHUNK = 500
-- fn(part, offset) for each run of at most size (CHUNK) items of list, in order; offset is
-- the index in list of part's first item, less one
local function each_chunk(list, fn, size)
  size = size or CHUNK
  for i = 1, #list, size do fn({unpack(list, i, math.min(i + size - 1, #list))}, i - 1) end
end
-- redis.call(cmd, key, ...list) in runs; step: items per member (2 for name, value pairs)
local function call_chunked(cmd, key, list, step)
  each_chunk(list, function(part) redis.call(cmd, key, unpack(part)) end, CHUNK * (step or 1))
end

-- The history indexes (fleetjobs.indexes): a family (top, ended, failed, action:<a>,
-- loc:<l>) is cut into buckets of IXN top-level jobs by ordinal, the bucket on the parent
-- ('ix'), small sorted sets Redis keeps as listpacks. ixdir:<family> lists the buckets that
-- have members, each by its latest score (its latest start: a query --since reads only the
-- buckets that reach it), but for 'ended' by its earliest (an end: retention reads only the
-- buckets due); ixorder lists top's buckets by number, Get-Job's order. ix_add and ix_rem
-- keep buckets and lists true together.
local function ix_add(b, family, id, score)
  if not given(b) then  -- a job a 0.2 console made, not moved yet: in 0.2's indexes, which
    -- 0.2 consoles still read (the move takes it into buckets with them)
    if family == 'ended' then redis.call('ZADD', K.ended, score, id) end
    if family == 'failed' then redis.call('ZADD', K.failed, score, id) end
    return
  end
  redis.call('ZADD', K.ix(b .. ':' .. family), score, id)
  -- a new bucket is listed; a listed one moves only towards the new score (scores of a job
  -- never change: a start's time, a top-level job's end)
  local new = redis.call('ZADD', K.ixdir(family), family == 'ended' and 'LT' or 'GT', score, b)
  if new == 1 and family == 'top' then redis.call('ZADD', K.ixorder, b, b) end
end
-- ids: every id to take out of bucket b of the family, at once (its list is set once)
local function ix_rem(b, family, ids)
  if not given(b) then return end
  local bucket = K.ix(b .. ':' .. family)
  local removed = 0
  each_chunk(ids, function(part) removed = removed + redis.call('ZREM', bucket, unpack(part)) end)
  if removed == 0 then return end
  local at = family == 'ended' and 0 or -1  -- the earliest or the latest left
  local left = redis.call('ZRANGE', bucket, at, at, 'WITHSCORES')
  if left[1] then
    -- pcall: a Redis at its maxmemory refuses this one write of a removal (all else deletes);
    -- the bucket's listed score stays as it was, and a query by time reads it for nothing
    redis.pcall('ZADD', K.ixdir(family), left[2], b)
  else
    redis.call('ZREM', K.ixdir(family), b)
    if family == 'top' then redis.call('ZREM', K.ixorder, b) end
  end
end

-- a child sent to its queue that still waits for its message, which is kept for it: its id,
-- location and message; nil otherwise (claimed, stopped, removed, made before kept messages)
local function awaiting(iid)
  local id = id_of(iid)
  if not id then return nil end
  local f = fields(K.job(id), 'state', 'queued', 'location')
  if f.state ~= S.NOT_STARTED or f.queued ~= '1' then return nil end
  local msg = redis.call('GET', K.msg(iid))
  if not msg then return nil end
  return id, f.location, msg
end

-- Redis's own clock, in seconds: one clock for what every host's scripts order by time
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A worker's own entry in seen, beside its locations' (no location begins with '@'): when
-- its liveness runs out, by Redis's clock. beat.lua writes it in the ZADD of its locations,
-- so a beat is one write; the worker's document (wk:<worker>) has no expiry.
local function worker_entry(w) return '@worker:' .. w end
local clock  -- server_time(), read once per script, and only if a worker's entry is asked
-- Whether worker w lives: its entry has not run out; or its document has an expiry, which
-- only a writer older than 0.4 gives it (a 0.3 worker's beats, or a confined worker's
-- through a 0.3 relay), moving it at each beat; a 0.4 document has none. now: the caller's
-- server_time(), when it read it already
local function worker_alive(w, now)
  local due = redis.call('ZSCORE', K.seen, worker_entry(w))
  if due then
    clock = now or clock or server_time()
    if tonumber(due) > clock then return true end
  end
  return redis.call('PTTL', K.worker(w)) > 0
end

-- The snapshots of jobs, their children and their unread counts (load.lua, poll.lua): tops
-- and kids are lists of {HGETALL, unread} (an empty list for a job that is gone); unread
-- counts a leaf's records (LLEN out + a batch held).
local function unread(h)
  local f = {}
  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
  if given(f.children) or not f.iid then return 0, f end
  return redis.call('LLEN', K.out(f.iid)) + redis.call('EXISTS', K.held(f.iid)), f
end

local function load_jobs(ids, with_children)
  local tops, kids = {}, {}
  for _, id in ipairs(ids) do
    local h = redis.call('HGETALL', K.job(id))
    if #h == 0 then
      table.insert(tops, {})
    else
      local n, f = unread(h)
      table.insert(tops, {h, n})
      if with_children and given(f.children) then
        for cid in string.gmatch(f.children, '[^,]+') do
          local ch = redis.call('HGETALL', K.job(cid))
          if #ch > 0 then
            local cn = unread(ch)
            table.insert(kids, {ch, cn, cid})  -- its id as read by: its own field may be damaged
          end
        end
      end
    end
  end
  return tops, kids
end

-- APPEND (append.lua, finish.lua): records onto a child's output, each once by its number (a
-- call whose answer was lost is retried, and must not write twice), and a wake-up for who
-- waits on the child or its parent. recs = {number, record JSON, number, record JSON...}.
-- Past cap bytes of records, the one record that crosses it becomes the warning record and
-- later ones are dropped. id: the child's, when the caller knows it. Returns 0 when the job
-- is gone or settled (an action writing after its stop point writes into nothing), 2 once
-- truncated, else 1.
-- quiet: publish nothing on the child's channel (finish does: its state follows at once).
-- known: the child's fields (wseq, wbytes, truncated, state) when the caller read them; sets:
-- a list the fields to write are added to (name, value, ...), for the caller's own HSET,
-- instead of an HSET here.
local function append_records(iid, parent_iid, cap, warning, recs, id, quiet, known, sets)
  id = id or id_of(iid)  -- the caller may know the child's id
  if not id then return 0 end
  local k = K.job(id)
  local f = known or fields(k, 'wseq', 'wbytes', 'truncated', 'state')
  if not f.state then return 0 end
  local out = sets or {}
  local last = tonumber(f.wseq or '0')
  local wseq, bytes, truncated = last, tonumber(f.wbytes or '0'), f.truncated == '1'
  local new = {}
  for i = 1, #recs, 2 do
    local seq, rec = tonumber(recs[i]), recs[i + 1]
    if seq > wseq then
      if FIN[f.state] then return 0 end
      wseq = seq
      if not truncated then
        bytes = bytes + #rec
        if bytes > cap then
          rec, truncated = warning, true
          out[#out + 1] = 'truncated'; out[#out + 1] = '1'
        end
        new[#new + 1] = rec
      end
    end
  end
  if wseq == last then return truncated and 2 or 1 end
  out[#out + 1] = 'wseq'; out[#out + 1] = wseq
  out[#out + 1] = 'wbytes'; out[#out + 1] = bytes
  if not sets then redis.call('HSET', k, unpack(out)) end
  if #new > 0 then
    call_chunked('RPUSH', K.out(iid), new)
    if not quiet then redis.call('PUBLISH', K.events(iid), EV.RECORD) end
    if parent_iid ~= '' then redis.call('PUBLISH', K.events(parent_iid), EV.RECORD) end
  end
  return truncated and 2 or 1
end
