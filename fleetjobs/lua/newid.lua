-- NEWID: the Ids of a job and its ARGV[3] children, and the job's ordinal, in one step, so the
-- ordinal (its place in the history indexes: common.lua's ix_add) follows the Ids whoever
-- starts at the same time. Returns {the last Id, the ordinal}.
local last = redis.call('INCRBY', K.seq, tonumber(ARGV[3]) + 1)
return {last, redis.call('INCR', K.tseq)}
