-- KEYS the jobs streams (normal, high, low); ARGV[1] group, ARGV[2]
-- consumer, ARGV[3..] entry ids (an entry id names one entry across the
-- three streams: see lease.lua).
-- The heartbeat: resets the idle time of deliveries this consumer still
-- owns, so a long attempt is never reclaimed from a live worker. A delivery
-- another daemon has reclaimed (pending under its name) is left alone and
-- reported back. One no longer pending at all was recorded meanwhile (most
-- often by this daemon's own completer, racing the heartbeat): not lost.
local lost = {}
for i = 3, #ARGV do
  for k = 1, #KEYS do
    -- pcall: a level stream may not exist (nor its group) yet.
    local p = redis.pcall('XPENDING', KEYS[k], ARGV[1], ARGV[i], ARGV[i], 1)
    if type(p) == 'table' and p.err == nil and p[1] ~= nil then
      if p[1][2] == ARGV[2] then
        redis.call('XCLAIM', KEYS[k], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
      else
        lost[#lost+1] = ARGV[i]
      end
      break
    end
  end
end
return lost
