-- FINISH: a worker settles the child it ran. ARGV[3] = child id, ARGV[4] = Completed or
-- Failed, ARGV[5] = reason; ARGV[6] = the child's iid as the worker knows it (optional: a
-- job whose Id was given again since is not settled); with the records its action wrote that
-- are not in Redis yet: ARGV[7] = parent iid or '', ARGV[8] = cap, ARGV[9] = warning record,
-- ARGV[10..] = pairs of record number and record JSON (append.lua's), written first.
-- A stop asked meanwhile wins: the child is Stopped. Returns {final state, due...}.
local id = ARGV[3]
-- one read of the child for its records and its end, and one write of both (settle's HSET)
local f = fields(K.job(id), 'state', 'stop', 'stop_reason', 'parent', 'location', 'queued', 'iid',
                 'wseq', 'wbytes', 'truncated')
local written = {}
-- a worker's finish names the child's InstanceId too: a job that was removed (or lost with
-- Redis's data) whose Id a new job has taken since is not the one this worker ran
if ARGV[6] and f.iid and f.iid ~= ARGV[6] then return result('Missing') end
if ARGV[7] then
  local recs = {}
  for i = 10, #ARGV do recs[#recs + 1] = ARGV[i] end
  append_records(ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9], recs, id, true, f, written)
end
if not f.state then return result('Missing') end
if FIN[f.state] then return result(f.state) end
local state, reason = ARGV[4], ARGV[5]
if f.stop == '1' then state, reason = S.STOPPED, f.stop_reason end
settle(id, state, reason, f, written)
return result(state)
