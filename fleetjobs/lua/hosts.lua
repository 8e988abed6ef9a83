-- HOSTS (read only): what the host list shows, in one round trip. ARGV[3] = '1' for every
-- location that ever heartbeated, else ARGV[4..] = the locations wanted (unknown ones left
-- out). Returns {locs, docs, now, due, running, facts, workers, wdocs}: the locations and
-- their host documents, Redis's clock, when each one's liveness runs out (seen), how many
-- children run there, their facts, and each online location's worker with its document
-- (the actions' parameters it published).
local locs, docs = {}, {}
if ARGV[3] == '1' then
  local all = redis.call('HGETALL', K.hosts)
  for i = 1, #all, 2 do locs[#locs + 1] = all[i]; docs[#docs + 1] = all[i + 1] end
else
  local wanted = {}
  for i = 4, #ARGV do wanted[#wanted + 1] = ARGV[i] end
  each_chunk(wanted, function(part)
    local found = redis.call('HMGET', K.hosts, unpack(part))
    for i, loc in ipairs(part) do
      if found[i] then locs[#locs + 1] = loc; docs[#docs + 1] = found[i] end
    end
  end)
end
if #locs == 0 then return {{}, {}, '0', {}, {}, {}, {}, {}} end
local now = server_time()
local due, running, facts = {}, {}, {}
local workers, wdocs, asked = {}, {}, {}
each_chunk(locs, function(part, at)
  local scores = redis.call('ZMSCORE', K.seen, unpack(part))
  local fs = redis.call('HMGET', K.facts, unpack(part))
  for j = 1, #part do
    due[at + j] = scores[j] or '0'
    facts[at + j] = fs[j] or ''
  end
end)
for i, loc in ipairs(locs) do
  running[i] = redis.call('SCARD', K.running(loc))
  if tonumber(due[i]) > now then
    local ok, doc = pcall(cjson.decode, docs[i])
    local w = ok and type(doc) == 'table' and doc.worker
    if type(w) == 'string' and w ~= '' and not asked[w] then
      asked[w] = true
      workers[#workers + 1] = w
      -- its document outlives it: a worker that died shows none, as it did when it expired
      wdocs[#wdocs + 1] = worker_alive(w, now) and redis.call('GET', K.worker(w)) or ''
    end
  end
end
return {locs, docs, tostring(now), due, running, facts, workers, wdocs}
