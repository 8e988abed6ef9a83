-- TAKE: ARGV[3] = keep ('1' leaves the records), ARGV[4...] = child iids. Returns one list of
-- records per iid. One script, so two receivers taking from the same job get each record
-- exactly once.
local keep = ARGV[3]
local out = {}
for i = 4, #ARGV do
  local key = K.out(ARGV[i])
  local items = redis.call('LRANGE', key, 0, -1)
  if keep ~= '1' and #items > 0 then redis.call('DEL', key) end
  out[#out + 1] = items
end
return out
