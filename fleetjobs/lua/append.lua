-- APPEND: ARGV[3] = child iid, ARGV[4] = parent iid or '', ARGV[5] = the most bytes of
-- records the child may keep, ARGV[6] = the warning record that says the output was
-- truncated, ARGV[7..] = pairs of record number and record JSON, in order.
-- Returns 0 when the job is gone (removed while it ran) or settled, so the runtime can stop
-- instead of writing into nothing; 2 once the output is truncated (later records are
-- dropped); else 1 (common.lua's append_records).
local recs = {}
for i = 7, #ARGV do recs[#recs + 1] = ARGV[i] end
return append_records(ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], recs)
