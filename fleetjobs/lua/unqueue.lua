-- UNQUEUE: ARGV[3] = a location, ARGV[4...] = InstanceIds of its removed children that never
-- started. Their Celery messages still wait in the location's queue (a host that is down, or
-- was never served): take them out, so a removed job leaves nothing behind. Returns how many.
local queue = K.queue(ARGV[3])
local gone = {}
for i = 4, #ARGV do gone[ARGV[i]] = true end
local removed = 0
for _, item in ipairs(redis.call('LRANGE', queue, 0, -1)) do
  local id = string.match(item, '"id": "([%x%-]+)"')
  if id and gone[id] then
    removed = removed + redis.call('LREM', queue, 1, item)
  end
end
return removed
