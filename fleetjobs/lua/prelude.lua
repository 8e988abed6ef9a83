-- Shared by every script that changes a job's state (claim, finish, stop, sweep).
-- The header before this file is generated (fleetjobs/scripts.py): P (the key prefix),
-- NOW (Unix seconds), S (state names, from fleetjobs/states.py), FIN (finished states),
-- K (key builders, from fleetjobs/keys.py) and EV (pub/sub messages).

local DISPATCH = {}  -- children a change released (a throttle's next): the caller publishes them
-- defined by rollout.lua, which follows this file: a rollout's waves and halts (--batch), and
-- the indexes of finished jobs (get --failed)
local rollout_settled, index_settled

-- a message on a job's channel; iid: the job's InstanceId when the caller has it already
local function publish(id, msg, iid)
  iid = iid or redis.call('HGET', K.job(id), 'iid')
  if iid then redis.call('PUBLISH', K.events(iid), msg) end
end

-- the message a change to 'state' sends: EV.END for a state a wait stops at (finished, held,
-- Blocked), so that waits sleep through the others (a Running); a job's watcher hears both
local function state_event(state)
  if FIN[state] or state == S.SUSPENDED or state == S.DISCONNECTED or state == S.BLOCKED then
    return EV.END
  end
  return EV.STATE
end

-- Every change of a child's state goes through move(), which keeps its parent's counters
-- ('c:<State>') true, so a parent's state is worked out from counts, whatever its size.
-- NotStarted is not counted: every child starts there and none goes back, so its count is
-- n less the others' (one field and one HINCRBY less per job). A parent that has the field
-- (made by an older console, or moved by an older worker, which count it) gets it set true
-- at each refresh, so older code reading it during an upgrade reads it right.
-- known: the child's state and parent when the caller has read them already; extra: more
-- fields (name, value, ...) to set with the state, in the same HSET.
local function move(id, new, known, extra)
  local k = K.job(id)
  local f = known or fields(k, 'state', 'parent')
  if f.state == new then
    if extra and #extra > 0 then redis.call('HSET', k, unpack(extra)) end
    return f.parent
  end
  redis.call('HSET', k, 'state', new, unpack(extra or {}))
  if given(f.parent) then
    local pk = K.job(f.parent)
    if f.state and f.state ~= S.NOT_STARTED then
      redis.call('HINCRBY', pk, 'c:' .. f.state, -1)
    end
    if new ~= S.NOT_STARTED then redis.call('HINCRBY', pk, 'c:' .. new, 1) end
  end
  return f.parent
end

-- a parent's state from its children's counts: the rule of fleetjobs.states.parent_state.
-- Returns its fields as read (with 'state' as it now is), for the caller's next steps.
-- more: other fields the caller needs, read in the same HMGET; begin: when its first child
-- began (a claim), set with the state unless the parent has one already.
local function refresh_parent(pid, more, begin)
  local pk = K.job(pid)
  local names = {'n', 'state', 'stop', 'stop_reason', 'freasons', 'last_reason', 'iid',
                 'batch', 'created', 'throttle', 'begin', 'ix'}
  for _, state in pairs(S) do table.insert(names, 'c:' .. state) end
  for _, name in ipairs(more or {}) do table.insert(names, name) end
  local f = fields(pk, unpack(names))
  if not f.n then return f end
  local n = tonumber(f.n)
  local function stored(state) return tonumber(f['c:' .. state] or '0') or 0 end
  local moved = 0  -- children out of NotStarted
  for _, state in pairs(S) do
    if state ~= S.NOT_STARTED then moved = moved + stored(state) end
  end
  local function count(state)
    if state == S.NOT_STARTED then return n - moved end
    return stored(state)
  end
  local failed, stopped = count(S.FAILED), count(S.STOPPED)
  local done = count(S.COMPLETED) + failed + stopped
  local new
  if done == n then
    if failed > 0 then new = S.FAILED
    elseif stopped > 0 then new = S.STOPPED
    else new = S.COMPLETED end
  elseif f.stop == '1' then new = S.STOPPING
  elseif count(S.BLOCKED) > 0 then new = S.BLOCKED  -- a child that asks holds the whole job
  elseif count(S.RUNNING) > 0 then new = S.RUNNING
  elseif count(S.STOPPING) > 0 then new = S.STOPPING
  elseif count(S.SUSPENDING) > 0 then new = S.SUSPENDING
  elseif count(S.DISCONNECTED) > 0 then new = S.DISCONNECTED
  elseif count(S.SUSPENDED) > 0 then new = S.SUSPENDED
  elseif count(S.NOT_STARTED) == n then new = S.NOT_STARTED
  else new = S.RUNNING end
  local set = {}
  if begin and not f.begin then set = {'begin', begin} end
  local kept = f['c:' .. S.NOT_STARTED]  -- an older version's count (see move)
  if kept and tonumber(kept) ~= n - moved then
    set[#set + 1] = 'c:' .. S.NOT_STARTED; set[#set + 1] = n - moved
  end
  if new ~= f.state then
    set[#set + 1] = 'state'; set[#set + 1] = new
    if FIN[new] then
      set[#set + 1] = 'end'; set[#set + 1] = NOW
      local reason = nil
      if failed > 0 then
        if n == 1 then reason = f.last_reason
        else reason = failed .. ' of ' .. n .. ' child jobs failed: ' .. (f.freasons or '') end
      elseif stopped > 0 then
        reason = f.stop_reason or f.last_reason
      end
      if reason then set[#set + 1] = 'reason'; set[#set + 1] = reason end
      ix_add(f.ix, 'ended', pid, NOW)
    end
  end
  if #set > 0 then redis.call('HSET', pk, unpack(set)) end
  if new ~= f.state then
    publish(pid, state_event(new), f.iid)
    f.state = new
  end
  return f
end

-- push a child's kept message onto its location's queue; false when none is kept
local function send(iid, location)
  local msg = redis.call('GET', K.msg(iid))
  if not msg then return false end
  redis.call('LPUSH', K.queue(location), msg)
  return true
end

-- the next child of a throttled parent that still waits for a slot, marked as queued
local function next_pending(pid)
  while true do
    local nxt = redis.call('LPOP', K.pending(pid))
    if not nxt then return end
    local f = fields(K.job(nxt), 'state', 'start_timeout', 'location', 'iid')
    if f.state == S.NOT_STARTED then
      redis.call('HSET', K.job(nxt), 'queued', '1')
      redis.call('ZADD', K.inq(f.location), server_time(), f.iid)
      redis.call('SADD', K.inqlocs, f.location)
      if given(f.start_timeout) then
        -- a start timeout counts from when the child is queued, not while it waits its turn
        local deadline = tonumber(NOW) + tonumber(f.start_timeout)
        redis.call('HSET', K.job(nxt), 'deadline', deadline)
        redis.call('ZADD', K.deadlines, deadline, nxt)
      end
      -- its kept message onto its queue, here; with none kept, the caller makes and sends one
      if not send(f.iid, f.location) then table.insert(DISPATCH, nxt) end
      return true
    end
  end
end

-- a child reaches a finished state: its record, its host's running set, its parent, its slot.
-- known: the child's parent, location, queued, iid and state, when the caller has read them;
-- more: other fields to write with its state (name, value, ...), in the same HSET.
local function settle(id, state, reason, known, more)
  local k = K.job(id)
  local f = known or fields(k, 'parent', 'location', 'queued', 'iid', 'state')
  local extra = {'end', NOW}
  if given(reason) then extra[3] = 'reason'; extra[4] = reason end
  for _, v in ipairs(more or {}) do extra[#extra + 1] = v end
  local waited = f.state == S.NOT_STARTED  -- never claimed: its kept message, its deadline
  move(id, state, f, extra)
  if waited and f.iid then redis.call('DEL', K.msg(f.iid)) end
  if given(f.parent) and (state == S.FAILED or state == S.STOPPED) then
    -- what the parent's Reason will say: the first three failures, where, and why
    local pk = K.job(f.parent)
    redis.call('HSET', pk, 'last_reason', reason or state)
    if state == S.FAILED and tonumber(redis.call('HGET', pk, 'c:' .. S.FAILED)) <= 3 then
      local line = (f.location or '?') .. ': ' .. (reason or 'failed')
      local prev = redis.call('HGET', pk, 'freasons')
      redis.call('HSET', pk, 'freasons', prev and (prev .. '; ' .. line) or line)
    end
  end
  redis.call('SREM', K.running(f.location or ''), id)
  redis.call('SREM', K.active, id)
  if waited then redis.call('ZREM', K.deadlines, id) end  -- a claim took it off the list
  publish(id, EV.END, f.iid)
  if given(f.parent) then
    local p = refresh_parent(f.parent)
    local rollout = given(p.batch)
      and rollout_settled(f.parent, id, state, f.location, f.queued == '1')
    -- only a parent with more children than its throttle has a pending list (lifecycle.py)
    local throttled = tonumber(p.n or '0') > (tonumber(p.throttle or '') or 0)
    if f.queued == '1' and not rollout and throttled then next_pending(f.parent) end
    -- a rollout may have changed the parent since: read again; else as refresh left it
    if rollout then index_settled(f.parent) else index_settled(f.parent, p) end
  else
    -- a top-level job settled itself (a run that could not start: no child to settle)
    ix_add(redis.call('HGET', K.job(id), 'ix'), 'ended', id, NOW)
    index_settled(id)
  end
end

-- what every state-changing script returns: its answer, then the children to publish
local function result(head)
  local out = {head}
  for _, v in ipairs(DISPATCH) do table.insert(out, v) end
  return out
end

-- a verb on a job: on a child, on_child(id); on a parent, on_parent(key) and then on_child on
-- each child, and the parent's state worked out again. Returns the job's state after it
-- ('Missing' for no job; a finished job is left as it is).
local function on_job(id, on_child, on_parent)
  local k = K.job(id)
  local f = fields(k, 'state', 'children')
  if not f.state then return 'Missing' end
  if FIN[f.state] then return f.state end
  if given(f.children) then
    on_parent(k)
    for cid in string.gmatch(f.children, '[^,]+') do on_child(cid) end
    refresh_parent(id)
  else
    on_child(id)
  end
  return redis.call('HGET', k, 'state')
end
