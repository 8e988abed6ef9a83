-- Shared by every script, after the generated header.

-- HMGET by name: fields(key, 'state', 'parent').state
local function fields(key, ...)
  local names = {...}
  local values = redis.call('HMGET', key, unpack(names))
  local out = {}
  for i, name in ipairs(names) do out[name] = values[i] end
  return out
end

local function given(v) return v and v ~= '' end

-- a child sent to its queue that still waits for its message, which is kept for it: its id,
-- location and message; nil otherwise (claimed, stopped, removed, made before kept messages)
local function awaiting(iid)
  local id = redis.call('HGET', K.iids, iid)
  if not id then return nil end
  local f = fields(K.job(id), 'state', 'queued', 'location')
  if f.state ~= S.NOT_STARTED or f.queued ~= '1' then return nil end
  local msg = redis.call('GET', K.msg(iid))
  if not msg then return nil end
  return id, f.location, msg
end

-- Redis's own clock, in seconds: one clock for what every host's scripts order by time
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
