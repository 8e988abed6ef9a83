-- BEAT: one worker's heartbeat, or its goodbye, whatever its number of locations.
-- ARGV[3] = 'beat', 'beat:<ms>', 'beat:<ms>:kept' or 'leave', ARGV[4] = worker id, ARGV[5] =
-- the worker's document, ARGV[6] = its host TTL in ms, ARGV[7...] = its locations.
-- ':kept': the document is the one this worker's last beat wrote (written again if gone).
-- 'beat:<ms>' also asks for the fleet's sweep turn: taken (the swept mark set for <ms>) when
-- nobody swept the fleet within <ms>, the gate sweep.lua applies to everyone else; the
-- caller then sweeps ungated. A worker's beat and its try for the turn are one command.
-- seen (sorted set): location -> when its liveness runs out (Redis's clock + the TTL of the
-- worker that beat for it last); a location left by a clean shutdown keeps that time
-- negated (offline at once, its last beat still known). Returns how many locations were new
-- to seen (the caller then writes their documents in hosts again); for 'beat:<ms>', that and
-- 1 if the turn was taken, else 0.
local mode, worker, ttl = ARGV[3], ARGV[4], tonumber(ARGV[6])
local gate, kept = string.match(mode, '^beat:(%d+)(.*)$')
local every = tonumber(gate or '0')
if mode == 'leave' then
  redis.call('DEL', K.worker(worker))
  for i = 7, #ARGV do
    local s = tonumber(redis.call('ZSCORE', K.seen, ARGV[i]) or '0')
    if s > 0 then redis.call('ZADD', K.seen, -s, ARGV[i]) end
  end
  return 0
end
local due = server_time() + ttl / 1000
-- a document the worker wrote at its last beat (':kept') only has its expiry moved: a few
-- bytes to the AOF and the replicas, not the whole document (kilobytes) every beat
if kept ~= ':kept' or redis.call('PEXPIRE', K.worker(worker), ttl) == 0 then
  redis.call('SET', K.worker(worker), ARGV[5], 'PX', ttl)
end
local args = {}
for i = 7, #ARGV do
  args[#args + 1] = due
  args[#args + 1] = ARGV[i]
end
local added = 0
-- one ZADD for up to 2,000 locations (4,000 arguments, well within what unpack takes)
each_chunk(args, function(part)
  added = added + redis.call('ZADD', K.seen, unpack(part))
end, 4000)
if every == 0 then return added end  -- as before turns: what a confined worker's relay answers
local turn = 0
if redis.call('SET', K.swept, '1', 'NX', 'PX', every) then turn = 1 end
return {added, turn}
