"""The registry's atomic steps, as Lua run inside Redis.

Every change of a job's state goes through one of these scripts, so a state, its parent's
state, the host's running set, the throttle queue and the event published for waiters change
together or not at all. Each script takes ``ARGV[1]`` = key prefix and ``ARGV[2]`` = now (Unix
seconds) and computes its keys from them (the fleet lives in one Redis, not a cluster).
The parent rule here mirrors :func:`fleetjobs.states.parent_state`; a test holds them together.
"""

from __future__ import annotations

PRELUDE = r"""
local P = ARGV[1]
local NOW = ARGV[2]
local DISPATCH = {}
local FIN = {Completed = true, Failed = true, Stopped = true}
local function jk(id) return P .. 'job:' .. id end
local function publish(id, msg)
  local iid = redis.call('HGET', jk(id), 'iid')
  if iid then redis.call('PUBLISH', P .. 'ev:' .. iid, msg) end
end

-- Every change of a child's state goes through move(), which keeps its parent's counters
-- ('c:<State>') true, so a parent's state is worked out from counts, whatever its size.
local function move(id, new)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'state', 'parent')
  if f[1] == new then return f[2] end
  redis.call('HSET', k, 'state', new)
  if f[2] and f[2] ~= '' then
    local pk = jk(f[2])
    if f[1] then redis.call('HINCRBY', pk, 'c:' .. f[1], -1) end
    redis.call('HINCRBY', pk, 'c:' .. new, 1)
  end
  return f[2]
end

local function refresh_parent(pid)
  local pk = jk(pid)
  local f = redis.call('HMGET', pk, 'n', 'state', 'stop', 'stop_reason', 'freasons',
    'last_reason', 'c:NotStarted', 'c:Running', 'c:Stopping', 'c:Blocked', 'c:Suspending',
    'c:Disconnected', 'c:Suspended', 'c:Completed', 'c:Failed', 'c:Stopped')
  if not f[1] then return end
  local function count(i) return tonumber(f[i] or '0') or 0 end
  local n = tonumber(f[1])
  local waiting, failed, stopped = count(7), count(15), count(16)
  local done = count(14) + failed + stopped
  local new
  if done == n then
    if failed > 0 then new = 'Failed'
    elseif stopped > 0 then new = 'Stopped'
    else new = 'Completed' end
  elseif f[3] == '1' then new = 'Stopping'
  elseif count(8) > 0 then new = 'Running'
  elseif count(9) > 0 then new = 'Stopping'
  elseif count(10) > 0 then new = 'Blocked'
  elseif count(11) > 0 then new = 'Suspending'
  elseif count(12) > 0 then new = 'Disconnected'
  elseif count(13) > 0 then new = 'Suspended'
  elseif waiting == n then new = 'NotStarted'
  else new = 'Running' end
  if new ~= f[2] then
    redis.call('HSET', pk, 'state', new)
    if FIN[new] then
      redis.call('HSET', pk, 'end', NOW)
      local reason = nil
      if failed > 0 then
        if n == 1 then reason = f[6]
        else reason = failed .. ' of ' .. n .. ' child jobs failed: ' .. (f[5] or '') end
      elseif stopped > 0 then
        reason = f[4] or f[6]
      end
      if reason then redis.call('HSET', pk, 'reason', reason) end
      redis.call('ZADD', P .. 'ended', NOW, pid)
    end
    publish(pid, 'state')
  end
end

-- the next child of a throttled parent that still waits for a slot, marked as queued
local function next_pending(pid)
  while true do
    local nxt = redis.call('LPOP', P .. 'pending:' .. pid)
    if not nxt then return end
    local f = redis.call('HMGET', jk(nxt), 'state', 'start_timeout')
    if f[1] == 'NotStarted' then
      redis.call('HSET', jk(nxt), 'queued', '1')
      if f[2] and f[2] ~= '' then
        -- a start timeout counts from when the child is queued, not while it waits its turn
        local deadline = tonumber(NOW) + tonumber(f[2])
        redis.call('HSET', jk(nxt), 'deadline', deadline)
        redis.call('ZADD', P .. 'deadlines', deadline, nxt)
      end
      table.insert(DISPATCH, nxt)
      return
    end
  end
end

-- a child reaches a finished state: its record, its host's running set, its parent, its slot
local function settle(id, state, reason)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'parent', 'location', 'queued')
  move(id, state)
  redis.call('HSET', k, 'end', NOW)
  if reason and reason ~= '' then redis.call('HSET', k, 'reason', reason) end
  if f[1] and f[1] ~= '' and (state == 'Failed' or state == 'Stopped') then
    -- what the parent's Reason will say: the first three failures, where, and why
    local pk = jk(f[1])
    redis.call('HSET', pk, 'last_reason', reason or state)
    if state == 'Failed' and tonumber(redis.call('HGET', pk, 'c:Failed')) <= 3 then
      local line = (f[2] or '?') .. ': ' .. (reason or 'failed')
      local prev = redis.call('HGET', pk, 'freasons')
      redis.call('HSET', pk, 'freasons', prev and (prev .. '; ' .. line) or line)
    end
  end
  redis.call('SREM', P .. 'running:' .. (f[2] or ''), id)
  redis.call('SREM', P .. 'active', id)
  redis.call('ZREM', P .. 'deadlines', id)
  publish(id, 'state')
  if f[1] and f[1] ~= '' then
    refresh_parent(f[1])
    if f[3] == '1' then next_pending(f[1]) end
  else
    redis.call('ZADD', P .. 'ended', NOW, id)
  end
end

local function result(head)
  local out = {head}
  for _, v in ipairs(DISPATCH) do table.insert(out, v) end
  return out
end
"""

# ARGV: prefix, now, child id, worker id. Returns {state}: 'Running' when this worker may run it.
CLAIM = (
    PRELUDE
    + r"""
local id, worker = ARGV[3], ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'stop', 'deadline', 'parent', 'location',
                     'start_timeout', 'stop_reason', 'worker')
if not f[1] then return result('Missing') end
if f[1] ~= 'NotStarted' then
  -- the same worker asking again (its first answer was lost) may go on; anyone else may not
  if f[1] == 'Running' and f[8] == worker then return result('Running') end
  if f[1] == 'Running' then return result('Taken') end
  return result(f[1])
end
if f[2] == '1' then
  settle(id, 'Stopped', f[7] or 'stopped before it started')
  return result('Stopped')
end
if f[3] and f[3] ~= '' and tonumber(NOW) > tonumber(f[3]) then
  settle(id, 'Failed', 'no worker on ' .. f[5] .. ' started the job within ' .. f[6] .. ' s')
  return result('Failed')
end
move(id, 'Running')
redis.call('HSET', k, 'begin', NOW, 'worker', worker, 'queued', '1')
if f[4] and f[4] ~= '' then redis.call('HSETNX', jk(f[4]), 'begin', NOW) end
redis.call('SADD', P .. 'running:' .. f[5], id)
redis.call('SADD', P .. 'active', id)
redis.call('ZREM', P .. 'deadlines', id)
publish(id, 'state')
if f[4] and f[4] ~= '' then refresh_parent(f[4]) end
return result('Running')
"""
)

# ARGV: prefix, now, child id, state, reason. Returns {final state, child ids to dispatch...}.
FINISH = (
    PRELUDE
    + r"""
local id = ARGV[3]
local f = redis.call('HMGET', jk(id), 'state', 'stop', 'stop_reason')
if not f[1] then return result('Missing') end
if FIN[f[1]] then return result(f[1]) end
local state, reason = ARGV[4], ARGV[5]
if f[2] == '1' then state, reason = 'Stopped', f[3] end
settle(id, state, reason)
return result(state)
"""
)

# ARGV: prefix, now, job id (parent or child), reason. Returns {state, child ids to dispatch...}.
STOP = (
    PRELUDE
    + r"""
local function stop_child(cid, reason)
  local k = jk(cid)
  local f = redis.call('HMGET', k, 'state', 'worker')
  local st = f[1]
  if not st or FIN[st] then return end
  redis.call('HSET', k, 'stop', '1', 'stop_reason', reason)
  if st == 'NotStarted' then settle(cid, 'Stopped', reason) return end
  if not f[2] or redis.call('EXISTS', P .. 'wk:' .. f[2]) == 0 then
    settle(cid, 'Stopped', reason .. ' (its worker is gone)')
    return
  end
  if st ~= 'Stopping' then
    local parent = move(cid, 'Stopping')
    if parent and parent ~= '' then refresh_parent(parent) end
  end
  publish(cid, 'stop')
end

local id, reason = ARGV[3], ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'children', 'parent')
if not f[1] then return result('Missing') end
if FIN[f[1]] then return result(f[1]) end
if f[2] and f[2] ~= '' then
  redis.call('HSET', k, 'stop', '1', 'stop_reason', reason)
  redis.call('DEL', P .. 'pending:' .. id)
  for cid in string.gmatch(f[2], '[^,]+') do stop_child(cid, reason) end
  refresh_parent(id)
else
  stop_child(id, reason)
end
return result(redis.call('HGET', k, 'state'))
"""
)

# ARGV: prefix, now, grace seconds. Over every running child and every child whose start
# deadline passed: a child that no worker started in time fails; a running child whose worker
# stopped heartbeating becomes Disconnected (Running again if the worker returns), and fails
# once it has been gone for the grace period. Returns {count changed, child ids to dispatch...}.
SWEEP = (
    PRELUDE
    + r"""
local grace = tonumber(ARGV[3])
local changed = 0
-- ends no worker will report to Flower: monitor.announce_lost sends them (bounded list)
local function lost(id)
  redis.call('RPUSH', P .. 'flower:lost', id)
  redis.call('LTRIM', P .. 'flower:lost', -10000, -1)
end
local function sweep_one(id)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'state', 'deadline', 'location', 'start_timeout', 'worker',
                       'lost_at', 'parent', 'stop', 'stop_reason')
  local st = f[1]
  if not st or FIN[st] then
    redis.call('SREM', P .. 'active', id)
    redis.call('ZREM', P .. 'deadlines', id)
    return
  end
  if st == 'NotStarted' then
    if f[2] and f[2] ~= '' and tonumber(NOW) > tonumber(f[2]) then
      settle(id, 'Failed', 'no worker on ' .. f[3] .. ' started the job within ' .. f[4] .. ' s')
      changed = changed + 1
    end
    return
  end
  redis.call('ZREM', P .. 'deadlines', id)
  local alive = f[5] and f[5] ~= '' and redis.call('EXISTS', P .. 'wk:' .. f[5]) == 1
  if alive then
    if st == 'Disconnected' then
      move(id, f[8] == '1' and 'Stopping' or 'Running')
      redis.call('HDEL', k, 'lost_at')
      publish(id, 'state')
      if f[7] and f[7] ~= '' then refresh_parent(f[7]) end
      changed = changed + 1
    end
    return
  end
  if f[8] == '1' then
    settle(id, 'Stopped', (f[9] or 'stopped') .. ' (its worker is gone)')
    lost(id)
    changed = changed + 1
  elseif st ~= 'Disconnected' then
    move(id, 'Disconnected')
    redis.call('HSET', k, 'lost_at', NOW)
    publish(id, 'state')
    if f[7] and f[7] ~= '' then refresh_parent(f[7]) end
    changed = changed + 1
  elseif tonumber(NOW) - tonumber(f[6] or NOW) >= grace then
    settle(id, 'Failed', 'host ' .. f[3] .. ' stopped answering while the job ran (worker '
      .. f[5] .. ' gone for ' .. grace .. ' s); it may have done part of its work')
    lost(id)
    changed = changed + 1
  end
end
for _, id in ipairs(redis.call('SMEMBERS', P .. 'active')) do sweep_one(id) end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', NOW)) do
  sweep_one(id)
end
return result(changed)
"""
)

# ARGV: prefix, now, child iid, record JSON, parent iid or '', record number. Returns 0 when
# the job is gone (removed while it ran), so the runtime can stop instead of writing into
# nothing. A record number already written is not written again: a write whose answer was lost
# on the network is retried, and must not appear twice.
APPEND = r"""
local P = ARGV[1]
local id = redis.call('HGET', P .. 'iids', ARGV[3])
if not id then return 0 end
local seq = tonumber(ARGV[6])
local k = P .. 'job:' .. id
if seq <= tonumber(redis.call('HGET', k, 'wseq') or '0') then return 1 end
redis.call('HSET', k, 'wseq', seq)
redis.call('RPUSH', P .. 'out:' .. ARGV[3], ARGV[4])
redis.call('PUBLISH', P .. 'ev:' .. ARGV[3], 'r')
if ARGV[5] ~= '' then redis.call('PUBLISH', P .. 'ev:' .. ARGV[5], 'r') end
return 1
"""

# ARGV: prefix, keep ('1' leaves the records), instance ids... Returns one list of records per id.
# One script, so two receivers taking from the same job get each record exactly once.
TAKE = r"""
local P, keep = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  local key = P .. 'out:' .. ARGV[i]
  local items = redis.call('LRANGE', key, 0, -1)
  if keep ~= '1' and #items > 0 then redis.call('DEL', key) end
  out[#out + 1] = items
end
return out
"""
