-- LOAD (read only): the snapshots of jobs, their children and their unread counts, in one
-- round trip. ARGV[3] = '1' to read each job's children too, ARGV[4] = '1' to add the
-- parent's call (args, kwargs, iid) of the first job (what its worker needs), ARGV[5..] = ids.
-- Returns {tops, kids, call}: tops and kids are lists of {HGETALL, unread} (an empty list
-- for a job that is gone); unread counts a leaf's records (LLEN out + a batch held).
local function unread(h)
  local f = {}
  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
  if given(f.children) or not f.iid then return 0, f end
  return redis.call('LLEN', K.out(f.iid)) + redis.call('EXISTS', K.held(f.iid)), f
end
local tops, kids, call = {}, {}, {}
local with_children, with_call = ARGV[3] == '1', ARGV[4] == '1'
for i = 5, #ARGV do
  local h = redis.call('HGETALL', K.job(ARGV[i]))
  if #h == 0 then
    table.insert(tops, {})
  else
    local n, f = unread(h)
    table.insert(tops, {h, n})
    if with_children and given(f.children) then
      for cid in string.gmatch(f.children, '[^,]+') do
        local ch = redis.call('HGETALL', K.job(cid))
        if #ch > 0 then
          local cn = unread(ch)
          table.insert(kids, {ch, cn})
        end
      end
    end
    if with_call and i == 5 and given(f.parent) then
      call = redis.call('HMGET', K.job(f.parent), 'args', 'kwargs', 'iid')
      if not call[3] then call = {} end
    end
  end
end
return {tops, kids, call}
