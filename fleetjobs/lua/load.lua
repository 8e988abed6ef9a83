-- LOAD (read only): the snapshots of jobs, their children and their unread counts, in one
-- round trip. ARGV[3] = '1' to read each job's children too, ARGV[4..] = ids.
-- Returns {tops, kids} (common.lua's load_jobs).
local ids = {}
for i = 4, #ARGV do table.insert(ids, ARGV[i]) end
local tops, kids = load_jobs(ids, ARGV[3] == '1')
return {tops, kids}
