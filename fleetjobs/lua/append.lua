-- APPEND: ARGV[3] = child iid, ARGV[4] = record JSON, ARGV[5] = parent iid or '',
-- ARGV[6] = record number, ARGV[7] = the most bytes of records the child may keep,
-- ARGV[8] = the warning record that says the output was truncated.
-- Returns 0 when the job is gone (removed while it ran) or settled, so the runtime can stop
-- instead of writing into nothing; 2 once the output is truncated (later records are
-- dropped); else 1. A record number already written is not written again: a write whose
-- answer was lost on the network is retried, and must not appear twice.
local iid, rec, parent_iid = ARGV[3], ARGV[4], ARGV[5]
local id = redis.call('HGET', K.iids, iid)
if not id then return 0 end
local seq = tonumber(ARGV[6])
local k = K.job(id)
local f = fields(k, 'wseq', 'wbytes', 'truncated', 'state')
if seq <= tonumber(f.wseq or '0') then return f.truncated == '1' and 2 or 1 end
-- a settled job takes no more records: what an action writes after its stop point (its
-- worker's enforcer settled it, or the sweep failed it) is not its output
if FIN[f.state or ''] then return 0 end
if f.truncated == '1' then return 2 end
local bytes = tonumber(f.wbytes or '0') + #rec
if bytes > tonumber(ARGV[7]) then
  rec = ARGV[8]
  redis.call('HSET', k, 'truncated', '1')
end
redis.call('HSET', k, 'wseq', seq, 'wbytes', bytes)
redis.call('RPUSH', K.out(iid), rec)
redis.call('PUBLISH', K.events(iid), EV.RECORD)
if parent_iid ~= '' then redis.call('PUBLISH', K.events(parent_iid), EV.RECORD) end
if rec == ARGV[8] then return 2 end
return 1
