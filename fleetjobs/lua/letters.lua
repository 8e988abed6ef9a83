-- LETTERS (read only): how many of each confined host's dead letters its newer ones pushed
-- out of its own list (fleetjobs.deadletters.dropped): its count less what its list holds,
-- read at one moment (a --clear or a letter between two reads made a count one off).
-- Returns {host, how many, host, how many, ...}, only hosts with some pushed out.
local out = {}
local counted = redis.call('HGETALL', K.letters_counted)
for i = 1, #counted, 2 do
  local host, n = counted[i], tonumber(counted[i + 1])
  if n and redis.call('SISMEMBER', K.letter_hosts, host) == 1 then
    local gone = n - redis.call('LLEN', K.host_letters(host))
    if gone > 0 then
      out[#out + 1] = host
      out[#out + 1] = gone
    end
  end
end
return out
