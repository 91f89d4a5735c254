-- The cancel requests still to act on, oldest first, dropping those whose
-- job is no longer running (its attempt ended before it could be
-- interrupted, e.g. it succeeded first).
-- KEYS[1] cancel requests, KEYS[2..4] jobs streams (normal, high, low);
-- ARGV[1] record prefix,
-- ARGV[2] consumer group, ARGV[3] most requests read.
-- The job records (ARGV[1] .. id) are not in KEYS: their ids are learnt from
-- the set inside the script. They share the queue's hash tag, so they live
-- on the same node as KEYS.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local rec = ARGV[1] .. id
  local entry = redis.call('HGET', rec, 'entry') or id
  local state = redis.call('HGET', rec, 'state')
  local running = false
  for k = 2, 4 do
    local p = redis.pcall('XPENDING', KEYS[k], ARGV[2], entry, entry, 1)
    if type(p) == 'table' and p.err == nil and #p > 0 then running = true end
  end
  if state ~= 'cancelled' and running then
    out[#out + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
