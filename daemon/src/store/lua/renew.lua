-- KEYS[1] jobs stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids.
-- The heartbeat: resets the idle time of deliveries this consumer still
-- owns, so a long attempt is never reclaimed from a live worker. A delivery
-- another daemon has reclaimed (pending under its name) is left alone and
-- reported back. One no longer pending at all was recorded meanwhile (most
-- often by this daemon's own completer, racing the heartbeat): not lost.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] ~= nil and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  elseif p[1] ~= nil then
    lost[#lost+1] = ARGV[i]
  end
end
return lost
