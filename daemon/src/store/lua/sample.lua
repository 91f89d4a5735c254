-- KEYS[1] jobs stream, KEYS[2] delayed set, KEYS[3] dead stream, KEYS[4]
-- count of acknowledged entries not yet trimmed, KEYS[5] and KEYS[6] the
-- high and low priority streams, KEYS[7] the set of unfinished batches,
-- KEYS[8] the pauses hash, KEYS[9] the time of the last recorded outcome;
-- ARGV[1] group.
-- Read-only. Ready = the group's lag when Redis knows it, else stream length
-- minus pending minus acknowledged entries not yet trimmed. The oldest ready entry
-- is the first one after the group's last-delivered id.
local now = now_ms()
local xlen = redis.call('XLEN', KEYS[1])
local delayed = redis.call('ZCARD', KEYS[2])
local dead = redis.call('XLEN', KEYS[3])
local found, pending, lag, last = 0, 0, -1, nil
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local f = {}
    for k = 1, #g, 2 do f[g[k]] = g[k + 1] end
    if f['name'] == ARGV[1] then
      found = 1
      pending = tonumber(f['pending']) or 0
      last = f['last-delivered-id']
      if type(f['lag']) == 'number' then lag = f['lag'] end
    end
  end
end
local oldest = -1
if found == 1 and last then
  local nxt = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
  if nxt[1] then oldest = tonumber(string.match(nxt[1][1], '^(%d+)')) end
end
local ready = lag
if ready < 0 then
  ready = math.max(xlen - pending - tonumber(redis.call('GET', KEYS[4]) or '0'), 0)
end
-- The other priority levels' streams hold only what is still to run or
-- running (entries are deleted as they are acknowledged, see apply.lua).
for k = 5, 6 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    local len = redis.call('XLEN', KEYS[k])
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[k])) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f['name'] == ARGV[1] then
        local p = tonumber(f['pending']) or 0
        pending = pending + p
        ready = ready + math.max(len - p, 0)
        local nxt = redis.call('XRANGE', KEYS[k], '(' .. f['last-delivered-id'], '+', 'COUNT', 1)
        if nxt[1] then
          local t = tonumber(string.match(nxt[1][1], '^(%d+)'))
          if oldest < 0 or t < oldest then oldest = t end
        end
      end
    end
  end
end
-- The whole queue paused (field `*`, its until_ms not passed): its jobs
-- wait on purpose.
local paused = 0
local p = redis.call('HGET', KEYS[8], '*')
if p then
  local ok, d = pcall(cjson.decode, p)
  if not ok or type(d) ~= 'table' or type(d.until_ms) ~= 'number' or d.until_ms > now then
    paused = 1
  end
end
local progress = tonumber(redis.call('GET', KEYS[9]) or '') or -1
return {found, ready, pending, delayed, dead, now, oldest, redis.call('ZCARD', KEYS[7]),
  paused, progress}
