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

-- Redis's own clock, in seconds: one clock for what every host's scripts order by time
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
