-- UNINDEX: take top-level jobs out of every history index (lifecycle.remove runs it in its
-- transaction, before their hashes go). ARGV[3...]: for each job, its id, its bucket ('': read
-- from its hash; given for a job whose hash is gone), its action and the hosts it had a child
-- on (comma-separated; both may be '' when not known). The ids of one bucket and family go
-- out together, and its list is set once (a purge removes buckets whole). A job an older
-- version indexed and that is not moved yet is taken out of that version's indexes.
local out, order = {}, {}  -- 'bucket\0family' -> {bucket, family, ids}, in first-seen order
local function drop(b, family, id)
  local key = b .. '\0' .. family
  local at = out[key]
  if not at then
    at = {b, family, {}}
    out[key] = at
    order[#order + 1] = at
  end
  table.insert(at[3], id)
end
for i = 3, #ARGV, 4 do
  local id, ix, action, locs = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] or ''
  if ix == '' then ix = redis.call('HGET', K.job(id), 'ix') end
  if ix then
    for _, family in ipairs({'top', 'ended', 'failed'}) do drop(ix, family, id) end
    if action ~= '' then drop(ix, 'action:' .. action, id) end
    for loc in string.gmatch(locs, '[^,]+') do drop(ix, 'loc:' .. loc, id) end
  else
    for _, key in ipairs({K.jobs, K.created, K.ended, K.failed, K.by_action(action)}) do
      redis.call('ZREM', key, id)
    end
    for loc in string.gmatch(locs, '[^,]+') do redis.call('ZREM', K.by_location(loc), id) end
  end
end
for _, at in ipairs(order) do ix_rem(at[1], at[2], at[3]) end
return 1
