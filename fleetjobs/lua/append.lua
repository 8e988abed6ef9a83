-- APPEND: ARGV[3] = child iid, ARGV[4] = record JSON, ARGV[5] = parent iid or '',
-- ARGV[6] = record number. Returns 0 when the job is gone (removed while it ran) or settled, so the
-- runtime can stop instead of writing into nothing. A record number already written is not
-- written again: a write whose answer was lost on the network is retried, and must not
-- appear twice.
local id = redis.call('HGET', K.iids, ARGV[3])
if not id then return 0 end
local seq = tonumber(ARGV[6])
local k = K.job(id)
if seq <= tonumber(redis.call('HGET', k, 'wseq') or '0') then return 1 end
-- a settled job takes no more records: what an action writes after its stop point (its
-- worker's enforcer settled it, or the sweep failed it) is not its output
if FIN[redis.call('HGET', k, 'state') or ''] then return 0 end
redis.call('HSET', k, 'wseq', seq)
redis.call('RPUSH', K.out(ARGV[3]), ARGV[4])
redis.call('PUBLISH', K.events(ARGV[3]), EV.RECORD)
if ARGV[5] ~= '' then redis.call('PUBLISH', K.events(ARGV[5]), EV.RECORD) end
return 1
