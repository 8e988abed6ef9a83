-- MIGRATE: move up to ARGV[3] top-level jobs, newest first, from the history indexes an
-- older version kept (one big sorted set each: jobs, created, ended, failed, by-action:<a>,
-- by-loc:<loc>) into buckets (common.lua's ix_add). Their ordinals count down from 0 (tlow),
-- so they sit below every job made since, in the order they had. Each job is moved whole in
-- this call: a reader sees it in one layout or the other. Returns how many are left.
local n = tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZREVRANGE', K.jobs, 0, n - 1)) do
  local k = K.job(id)
  local f = fields(k, 'created', 'action', 'location', 'children', 'ix', 'state', 'end')
  local created = redis.call('ZSCORE', K.created, id) or f.created or NOW
  -- as the old indexes had them, else as its record says (an index dropped before it moved)
  local ended = redis.call('ZSCORE', K.ended, id) or (FIN[f.state or ''] and (f['end'] or NOW))
  local failed = redis.call('ZSCORE', K.failed, id) or (f.state == S.FAILED and created)
  local locs = {}
  for loc in string.gmatch(f.location or '', '[^,]+') do locs[loc] = true end
  for cid in string.gmatch(f.children or '', '[^,]+') do
    local loc = redis.call('HGET', K.job(cid), 'location')
    if loc then locs[loc] = true end
  end
  for loc in pairs(locs) do redis.call('ZREM', K.by_location(loc), id) end
  redis.call('ZREM', K.by_action(f.action or ''), id)
  for _, key in ipairs({K.jobs, K.created, K.ended, K.failed}) do redis.call('ZREM', key, id) end
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
end
return redis.call('ZCARD', K.jobs)
