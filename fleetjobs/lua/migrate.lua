-- MIGRATE: move a slice of what the history indexes of an older version (0.2: one big sorted
-- set each, jobs, created, ended, failed, by-action:<a>, by-loc:<loc>) hold into buckets
-- (common.lua's ix_add): up to ARGV[3] top-level jobs, newest first, and no more children
-- than ARGV[4] (a fan-out's hosts are read from its children), but the first job of a call
-- whole, whatever its size. Their ordinals count down from 0 (tlow): they sit below every
-- job made since, in the order they had. Each job moves whole in one call: a reader sees it
-- in one layout or the other. Once jobs is
-- empty, the entries an older worker wrote for a job made since (ended, failed: it has a
-- bucket) are moved too. Returns how many entries jobs, ended and failed still hold, and
-- how many of those ends and failures it moved.
local n, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local read = 0
-- a time as the old indexes had it, else as the record says (an index dropped before it
-- moved), else now: a finite number, as text Redis reads (%.17g: exact); a damaged time
-- moves the job with the time of its move, never loses it from every index
local function at(score, field)
  for _, v in ipairs({score or '', field or ''}) do
    local x = tonumber(v)
    if x and x == x and x ~= math.huge and x ~= -math.huge then
      return string.format('%.17g', x)
    end
  end
  return NOW
end
for _, id in ipairs(redis.call('ZREVRANGE', K.jobs, 0, n - 1)) do
  local k = K.job(id)
  local f = fields(k, 'created', 'action', 'location', 'children', 'ix', 'state', 'end')
  local kids = 0
  for _ in string.gmatch(f.children or '', '[^,]+') do kids = kids + 1 end
  if read > 0 and read + kids > budget then break end  -- the next call takes it
  local created = at(redis.call('ZSCORE', K.created, id), f.created)
  local ended = redis.call('ZSCORE', K.ended, id)
  if ended or FIN[f.state or ''] then ended = at(ended, f['end']) end
  local failed = redis.call('ZSCORE', K.failed, id)
  if failed or f.state == S.FAILED then failed = at(failed, created) end
  local locs = {}
  for loc in string.gmatch(f.location or '', '[^,]+') do locs[loc] = true end
  for cid in string.gmatch(f.children or '', '[^,]+') do
    local loc = redis.call('HGET', K.job(cid), 'location')
    if loc then locs[loc] = true end
  end
  read = read + math.max(kids, 1)
  if f.action then  -- its hash is there (a job removed meanwhile is only taken out)
    local ix = f.ix
    if not ix then
      local ordinal = 1 - redis.call('INCR', K.tlow)
      ix = string.format('%d', math.floor((ordinal - 1) / IXN))
      redis.call('HSET', k, 'ix', ix)
    end
    ix_add(ix, 'top', id, created)
    ix_add(ix, 'action:' .. f.action, id, created)
    for loc in pairs(locs) do ix_add(ix, 'loc:' .. loc, id, created) end
    if ended then ix_add(ix, 'ended', id, ended) end
    if failed then ix_add(ix, 'failed', id, failed) end
  end
  -- out of the old indexes once in the new (a script that fails midway is not undone); not
  -- out of created: its existence tells the caller 0.2's keys are still to be dropped
  for loc in pairs(locs) do redis.call('ZREM', K.by_location(loc), id) end
  redis.call('ZREM', K.by_action(f.action or ''), id)
  for _, key in ipairs({K.jobs, K.ended, K.failed}) do redis.call('ZREM', key, id) end
end
local carried = 0
if redis.call('EXISTS', K.jobs) == 0 then
  for _, family in ipairs({'ended', 'failed'}) do
    local old = family == 'ended' and K.ended or K.failed
    local rows = redis.call('ZRANGE', old, 0, n - 1, 'WITHSCORES')
    for i = 1, #rows, 2 do
      local ix = redis.call('HGET', K.job(rows[i]), 'ix')
      if ix then ix_add(ix, family, rows[i], rows[i + 1]); carried = carried + 1 end
      redis.call('ZREM', old, rows[i])
    end
  end
end
local left = redis.call('ZCARD', K.jobs) + redis.call('ZCARD', K.ended)
return {left + redis.call('ZCARD', K.failed), carried}
