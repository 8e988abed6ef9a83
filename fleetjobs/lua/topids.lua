-- TOPIDS (read only): a history family's ids, bucket by bucket, in one round trip
-- (fleetjobs.indexes.Indexes.ids). ARGV[3] = the family, ARGV[4] = '1' newest bucket first,
-- ARGV[5] = the last bucket read before ('' for none), ARGV[6] = how many ids at least (whole
-- buckets are read). Returns {the last bucket read (false: none left), {its ids}...}.
local family, newest, after, want = ARGV[3], ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local dir = K.ixdir(family)
local out, taken = {false}, 0
while taken < want do
  local bs
  if newest then
    bs = redis.call('ZREVRANGEBYSCORE', dir, after == '' and '+inf' or '(' .. after, '-inf',
                    'LIMIT', 0, 16)
  else
    bs = redis.call('ZRANGEBYSCORE', dir, after == '' and '-inf' or '(' .. after, '+inf',
                    'LIMIT', 0, 16)
  end
  if #bs == 0 then break end
  for _, b in ipairs(bs) do
    local ids = redis.call('ZRANGE', K.ix(b .. ':' .. family), 0, -1)
    out[#out + 1] = ids
    out[1], after, taken = b, b, taken + #ids
    if taken >= want then break end
  end
end
return out
