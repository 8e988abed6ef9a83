-- ACK: ARGV[3] = token of a take, then pairs of ARGV: child iid, how many of the records taken
-- under the token were handed on. Those leave Redis for good; the rest (a receiver that
-- stopped part-way) go back in front of the child's records, in order, for the next take.
local token = ARGV[3]
for i = 4, #ARGV, 2 do
  local iid, used = ARGV[i], tonumber(ARGV[i + 1])
  local packed = redis.call('HGET', K.held(iid), 'r:' .. token)
  if packed then
    local recs = cjson.decode(packed)
    for j = #recs, used + 1, -1 do redis.call('LPUSH', K.out(iid), recs[j]) end
    redis.call('HDEL', K.held(iid), 'r:' .. token, 'd:' .. token)
  end
end
return 1
