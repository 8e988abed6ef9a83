-- BEAT: one worker's heartbeat, or its goodbye, whatever its number of locations.
-- ARGV[3] = 'beat', 'beat:<ms>', 'beat:<ms>:kept', 'leave' or 'forget', ARGV[4] = worker id,
-- ARGV[5] = the worker's document, ARGV[6] = its host TTL in ms, ARGV[7...] = its locations.
-- A beat is one write: the ZADD of the worker's own entry (common.lua's worker_entry) and its
-- locations' into seen. Its document (wk:<worker>) has no expiry: written whole when it
-- changed (a beat without ':kept'), left alone by a ':kept' one unless Redis lost it (the
-- worker's entry was new), deleted when the worker leaves, or when it is forgotten. A
-- relay's ':kept' beat (no turn asked: 'beat:0:kept') also writes it when it is gone or has
-- an expiry: relays of two versions may take turns with a confined worker's beats, and a
-- 0.3 one's document expires. workers (set): the ids that have an entry, for 'forget'.
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
-- age for the whole fleet; returns how many. serving:<location> (set): the workers that serve
-- it, added to when a worker's document is written, left by a leave (which keeps a location
-- another live worker serves online) and a forget.
local mode, worker, ttl = ARGV[3], ARGV[4], tonumber(ARGV[6])
if mode == 'leave' then
  redis.call('DEL', K.worker(worker))
  redis.call('ZREM', K.seen, worker_entry(worker))
  redis.call('SREM', K.workers, worker)
  for i = 7, #ARGV do
    local loc = ARGV[i]
    redis.call('SREM', K.serving(loc), worker)
    -- another live worker that serves it keeps it online (the dead are dropped as found)
    local served = false
    for _, w in ipairs(redis.call('SMEMBERS', K.serving(loc))) do
      if worker_alive(w) then served = true else redis.call('SREM', K.serving(loc), w) end
    end
    local s = tonumber(redis.call('ZSCORE', K.seen, loc) or '0')
    if s > 0 and not served then redis.call('ZADD', K.seen, -s, loc) end
  end
  return 0
end
if mode == 'forget' then
  if not redis.call('SET', K.forgot, '1', 'NX', 'PX', ttl) then return 0 end
  -- the workers' entries alone (whatever the number of locations, online or not)
  local ids, gone = redis.call('SMEMBERS', K.workers), 0
  local cutoff = server_time() - ttl / 1000
  each_chunk(ids, function(part)
    local entries = {}
    for j, w in ipairs(part) do entries[j] = worker_entry(w) end
    local dues = redis.call('ZMSCORE', K.seen, unpack(entries))
    for j, w in ipairs(part) do
      if not dues[j] or tonumber(dues[j]) < cutoff then
        redis.call('ZREM', K.seen, entries[j])
        -- off the serving sets of the locations its document names
        local ok, doc = pcall(cjson.decode, redis.call('GET', K.worker(w)) or '')
        if ok and type(doc) == 'table' and type(doc.locations) == 'table' then
          for _, loc in ipairs(doc.locations) do
            if type(loc) == 'string' then redis.call('SREM', K.serving(loc), w) end
          end
        end
        -- a document with an expiry is a 0.3 relay's, still beating for it: it goes by itself
        if redis.call('PTTL', K.worker(w)) == -1 then redis.call('DEL', K.worker(w)) end
        redis.call('SREM', K.workers, w)
        gone = gone + 1
      end
    end
  end)
  return gone
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
local fresh = kept ~= ':kept' and not redis.call('ZSCORE', K.seen, worker_entry(worker))
local added = fresh and -1 or 0
-- one ZADD for up to 2,000 entries (4,000 arguments, well within what unpack takes)
each_chunk(args, function(part)
  added = added + redis.call('ZADD', K.seen, unpack(part))
end, 4000)
-- serving:<location>: this worker among those of each of its locations, when its document
-- is written (its first beat, a change) or Redis lost it
local function serving()
  for i = 7, #ARGV do redis.call('SADD', K.serving(ARGV[i]), worker) end
end
if kept ~= ':kept' then
  redis.call('SET', K.worker(worker), ARGV[5])
  if fresh then redis.call('SADD', K.workers, worker) end
  serving()
elseif added > 0 then  -- Redis lost its data (a write only if the document went with it)
  redis.call('SET', K.worker(worker), ARGV[5], 'NX')
  redis.call('SADD', K.workers, worker)  -- a write only if it went too
  serving()
elseif every == 0 and redis.call('PTTL', K.worker(worker)) ~= -1 then
  redis.call('SET', K.worker(worker), ARGV[5])  -- a relay's: gone, or a 0.3 relay's
end
if every == 0 then return added end  -- as before turns: what a confined worker's relay answers
local turn = 0
if redis.call('SET', K.swept, '1', 'NX', 'PX', every) then turn = 1 end
return {added, turn}
