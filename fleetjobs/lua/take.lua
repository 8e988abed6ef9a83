-- TAKE: ARGV[3] = mode: '0' takes, '1' reads without taking (keep), '2' takes and, when the
-- take empties every list, deletes them at once (the caller hands them on with no Redis call
-- between: Fleet.receive returning its list); ARGV[4] = at most this many records in all,
-- ARGV[5] = token of this take, ARGV[6] = lease seconds, ARGV[7...] = child iids.
-- Returns one list of records per iid, oldest first, then '1' when they are held (ack them).
--
-- Taken records do not leave Redis yet: they move to the child's held hash under the token
-- ('r:<token>' the records, 'd:<token>' the lease's end) until the receiver acknowledges
-- them (ack.lua) once it has handed them on. A receiver that dies holding them loses
-- nothing: the next take after the lease puts them back in front, in order. One script, so
-- concurrent receivers get each record exactly once.
local keep, room, token, lease = ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local out = {}

local function restore_expired(iid)
  local held = redis.call('HGETALL', K.held(iid))
  for i = 1, #held, 2 do
    local field, value = held[i], held[i + 1]
    if string.sub(field, 1, 2) == 'd:' and tonumber(value) < tonumber(NOW) then
      local t = string.sub(field, 3)
      local recs = cjson.decode(redis.call('HGET', K.held(iid), 'r:' .. t) or '[]')
      for j = #recs, 1, -1 do redis.call('LPUSH', K.out(iid), recs[j]) end
      redis.call('HDEL', K.held(iid), 'd:' .. t, 'r:' .. t)
    end
  end
end

local taken = {}
for i = 7, #ARGV do
  local iid = ARGV[i]
  local key = K.out(iid)
  local items = {}
  if room > 0 then
    if keep == '1' then
      items = redis.call('LRANGE', key, 0, room - 1)
    else
      restore_expired(iid)
      items = redis.call('LRANGE', key, 0, room - 1)
      if #items > 0 then
        redis.call('LTRIM', key, #items, -1)
        taken[iid] = items
      end
    end
    room = room - #items
  end
  out[#out + 1] = items
end
-- a full take may leave more behind: the caller takes again, so this batch is held
local held = keep ~= '2' or room <= 0
if held then
  for iid, items in pairs(taken) do
    redis.call('HSET', K.held(iid), 'r:' .. token, cjson.encode(items),
               'd:' .. token, tonumber(NOW) + lease)
  end
end
out[#out + 1] = held and '1' or '0'
return out
