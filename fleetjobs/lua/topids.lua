-- TOPIDS (read only): Get-Job's list, bucket by bucket of the 'top' history index in order
-- (ixorder), in one round trip (fleetjobs.indexes.Indexes.ids). ARGV[3] = '1' newest bucket
-- first, ARGV[4] = the last bucket read before ('' for none), ARGV[5] = how many ids at least
-- (whole buckets are read). Returns {the last bucket read (false: none left), {its ids}...}.
local newest, after, want = ARGV[3] == '1', ARGV[4], tonumber(ARGV[5])
local out, taken = {false}, 0
while taken < want do
  local bs
  if newest then
    bs = redis.call('ZREVRANGEBYSCORE', K.ixorder, after == '' and '+inf' or '(' .. after,
                    '-inf', 'LIMIT', 0, 16)
  else
    bs = redis.call('ZRANGEBYSCORE', K.ixorder, after == '' and '-inf' or '(' .. after,
                    '+inf', 'LIMIT', 0, 16)
  end
  if #bs == 0 then break end
  for _, b in ipairs(bs) do
    local ids = redis.call('ZRANGE', K.ix(b .. ':top'), 0, -1)
    out[#out + 1] = ids
    out[1], after, taken = b, b, taken + #ids
    if taken >= want then break end
  end
end
return out
