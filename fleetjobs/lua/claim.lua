-- CLAIM: a worker asks to run a child. ARGV[3] = child id, ARGV[4] = worker id, ARGV[5] = the
-- locations the message may be for (the one whose queue delivered it, or every location the
-- worker serves, comma-separated), ARGV[6] = the message's task id ('' for either: not checked,
-- for a caller that is no worker), ARGV[7] = this delivery's token (a retry of the same claim
-- carries the same one; a copy of the message, even on the same worker, another).
-- Returns {{state, due...}, child, call}: 'Running' when this worker may run it, with the
-- child's HGETALL and its parent's call (HMGET args, kwargs, iid), so the worker reads nothing
-- more before it runs; anything else means do not (child and call empty). 'Refused: why' is
-- a message that is not addressed to this worker: nothing changes.
local id, worker, via, task_id, attempt = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] or ''

local k = K.job(id)
local f = fields(k, 'state', 'stop', 'deadline', 'parent', 'location', 'start_timeout',
                 'stop_reason', 'worker', 'iid', 'attempt', 'queued')
local CALL = {'args', 'kwargs', 'iid'}
local function answer(head, parent)  -- parent: its fields, when the caller read CALL already
  if head ~= S.RUNNING then return {result(head), {}, {}} end
  local call = parent and {parent.args, parent.kwargs, parent.iid}
    or redis.call('HMGET', K.job(f.parent), unpack(CALL))
  return {result(head), redis.call('HGETALL', k), call}
end
if not f.state then
  -- an Id no start ever gave: a message the fleet never sent (a removed job's is Missing)
  if (tonumber(id) or 0) > (tonumber(redis.call('GET', K.seq)) or 0) then
    return answer('Refused: no job ' .. id .. ' was ever started: a message the fleet never '
      .. 'sent (or sent before Redis lost its data)')
  end
  return answer('Missing')
end
if not given(f.parent) then
  return answer('Refused: job ' .. id .. ' is a parent job; only its children run')
end
if via ~= '' and not string.find(',' .. via .. ',', ',' .. f.location .. ',', 1, true) then
  return answer('Refused: job ' .. id .. ' belongs to location ' .. f.location
    .. ', not to ' .. via)
end
if task_id ~= '' and task_id ~= f.iid then
  return answer('Refused: the message for job ' .. id .. ' is not the one the fleet sent'
    .. ' (task id ' .. task_id .. ')')
end
if f.state == S.NOT_STARTED and f.queued ~= '1' then
  -- its throttle slot or rollout wave has not come: its message was not sent yet, so this
  -- is a copy or a forgery (it runs when released, from the message kept for it)
  return answer('Refused: job ' .. id .. ' waits for its turn (a throttle slot or a wave)')
end
-- its message has arrived: nothing to re-send, whatever the answer
redis.call('ZREM', K.inq(f.location), f.iid)
redis.call('DEL', K.msg(f.iid))
if f.state ~= S.NOT_STARTED then
  -- the same delivery asking again (its first answer was lost) may go on; no other may
  if f.state == S.RUNNING and f.worker == worker and (f.attempt or '') == attempt then
    return answer(S.RUNNING)
  end
  if f.state == S.RUNNING then return answer('Taken') end
  return answer(f.state)
end
if f.stop == '1' then
  settle(id, S.STOPPED, f.stop_reason or 'stopped before it started', f)
  return answer(S.STOPPED)
end
if given(f.deadline) and tonumber(NOW) > tonumber(f.deadline) then
  settle(id, S.FAILED,
    'no worker on ' .. f.location .. ' started the job within ' .. f.start_timeout .. ' s', f)
  return answer(S.FAILED)
end
move(id, S.RUNNING, f, {'begin', NOW, 'worker', worker, 'queued', '1', 'attempt', attempt})
redis.call('SADD', K.running(f.location), id)
redis.call('SADD', K.active, id)
-- off the start deadlines (a child is on them exactly when its record has a deadline)
if given(f.deadline) then redis.call('ZREM', K.deadlines, id) end
publish(id, EV.STATE, f.iid)
-- the parent's state, its begin (its first child's) and the call the worker runs: one read
return answer(S.RUNNING, refresh_parent(f.parent, CALL, NOW))
