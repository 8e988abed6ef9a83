-- PGROUPS: the process groups a running job started (workers.reaper). ARGV[3] = 'record' or
-- 'forget', ARGV[4] = the job's id, ARGV[5] = its location, ARGV[6] = the record (JSON; ''
-- forgets it too). The job's field only while the job exists (a job removed meanwhile is
-- not half-recreated); the location's index in any case, so a removed job's leftovers are
-- still found; the location leaves pglocs once its index is empty.
local mode, id, loc, doc = ARGV[3], ARGV[4], ARGV[5], ARGV[6] or ''
local job, index = K.job(id), K.pgroups(loc)
if mode == 'forget' or doc == '' then
  redis.call('HDEL', job, 'pgids')
  redis.call('HDEL', index, id)
  if redis.call('HLEN', index) == 0 then redis.call('SREM', K.pglocs, loc) end
  return 0
end
if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'pgids', doc) end
redis.call('HSET', index, id, doc)
redis.call('SADD', K.pglocs, loc)
return 1
