-- BEAT: one worker's heartbeat, or its goodbye, whatever its number of locations.
-- ARGV[3] = 'beat', 'beat:<ms>', 'beat:<ms>:kept', 'leave' or 'forget', ARGV[4] = worker id,
-- ARGV[5] = the worker's document, ARGV[6] = its host TTL in ms, ARGV[7...] = its locations.
-- A beat is one write: the ZADD of the worker's own entry (common.lua's worker_entry) and its
-- locations' into seen. Its document (wk:<worker>) has no expiry: written whole when it
-- changed (a beat without ':kept'), left alone by a ':kept' one unless Redis lost it (the
-- worker's entry was new), deleted when the worker leaves, or when it is forgotten.
-- 'beat:<ms>' also asks for the fleet's sweep turn: taken (the swept mark set for <ms>) when
-- nobody swept the fleet within <ms>, the gate sweep.lua applies to everyone else; the
-- caller then sweeps ungated. A worker's beat and its try for the turn are one command.
-- seen (sorted set): location -> when its liveness runs out (Redis's clock + the TTL of the
-- worker that beat for it last); a location left by a clean shutdown keeps that time
-- negated (offline at once, its last beat still known). Returns how many locations were new
-- to seen (the caller then writes their documents in hosts again; for a ':kept' beat, the
-- worker's own entry counts too when it was new: Redis lost its data); for 'beat:<ms>', that
-- and 1 if the turn was taken, else 0.
-- 'forget' (ARGV[6] = an age in ms): the entries and documents of workers whose liveness ran
-- out longer ago than that (killed: a clean shutdown removes its own), at most once per that
-- age for the whole fleet; returns how many.
local mode, worker, ttl = ARGV[3], ARGV[4], tonumber(ARGV[6])
if mode == 'leave' then
  redis.call('DEL', K.worker(worker))
  redis.call('ZREM', K.seen, worker_entry(worker))
  for i = 7, #ARGV do
    local s = tonumber(redis.call('ZSCORE', K.seen, ARGV[i]) or '0')
    if s > 0 then redis.call('ZADD', K.seen, -s, ARGV[i]) end
  end
  return 0
end
if mode == 'forget' then
  if not redis.call('SET', K.forgot, '1', 'NX', 'PX', ttl) then return 0 end
  local gone = {}
  -- the entries past that age: workers' and long-offline locations' (whose are kept)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K.seen, '-inf', server_time() - ttl / 1000)) do
    if string.sub(m, 1, 8) == '@worker:' then
      gone[#gone + 1] = m
      redis.call('DEL', K.worker(string.sub(m, 9)))
    end
  end
  if #gone > 0 then call_chunked('ZREM', K.seen, gone, 1) end
  return #gone
end
local gate, kept = string.match(mode, '^beat:(%d+)(.*)$')
local every = tonumber(gate or '0')
local due = server_time() + ttl / 1000
local args = {due, worker_entry(worker)}
for i = 7, #ARGV do
  args[#args + 1] = due
  args[#args + 1] = ARGV[i]
end
-- a beat that writes the document counts its locations alone (its entry's newness read
-- first: one read); a ':kept' one reads nothing, and counts its own entry too when it was new
local added = 0
if kept ~= ':kept' and not redis.call('ZSCORE', K.seen, worker_entry(worker)) then added = -1 end
-- one ZADD for up to 2,000 entries (4,000 arguments, well within what unpack takes)
each_chunk(args, function(part)
  added = added + redis.call('ZADD', K.seen, unpack(part))
end, 4000)
if kept ~= ':kept' then
  redis.call('SET', K.worker(worker), ARGV[5])
elseif added > 0 then  -- Redis lost its data (a write only if the document went with it)
  redis.call('SET', K.worker(worker), ARGV[5], 'NX')
end
if every == 0 then return added end  -- as before turns: what a confined worker's relay answers
local turn = 0
if redis.call('SET', K.swept, '1', 'NX', 'PX', every) then turn = 1 end
return {added, turn}
