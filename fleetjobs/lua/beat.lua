-- BEAT: one worker's heartbeat, or its goodbye, whatever its number of locations.
-- ARGV[3] = 'beat' or 'leave', ARGV[4] = worker id, ARGV[5] = the worker's document,
-- ARGV[6] = its host TTL in ms, ARGV[7...] = its locations.
-- seen (sorted set): location -> when its liveness runs out (Redis's clock + the TTL of the
-- worker that beat for it last); a location left by a clean shutdown keeps that time
-- negated (offline at once, its last beat still known). Returns how many locations were new
-- to seen (the caller then writes their documents in hosts again).
local mode, worker, ttl = ARGV[3], ARGV[4], tonumber(ARGV[6])
if mode == 'leave' then
  redis.call('DEL', K.worker(worker))
  for i = 7, #ARGV do
    local s = tonumber(redis.call('ZSCORE', K.seen, ARGV[i]) or '0')
    if s > 0 then redis.call('ZADD', K.seen, -s, ARGV[i]) end
  end
  return 0
end
local due = server_time() + ttl / 1000
redis.call('SET', K.worker(worker), ARGV[5], 'PX', ttl)
local args = {}
for i = 7, #ARGV do
  args[#args + 1] = due
  args[#args + 1] = ARGV[i]
end
local added = 0
each_chunk(args, function(part)
  added = added + redis.call('ZADD', K.seen, unpack(part))
end, CHUNK * 2)
return added
