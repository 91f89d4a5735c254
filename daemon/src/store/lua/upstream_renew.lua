-- Extends the leases of the slots this daemon's attempts hold.
-- KEYS: the slot-holder sets, one per upstream.
-- ARGV: [1] a lease (ms), then per key k: the number of members, the members.
-- Only members still there are renewed (XX): a slot whose lease ran out was
-- given to another attempt meanwhile.
local now = now_ms()
local lease = tonumber(ARGV[1])
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  for j = 1, n do redis.call('ZADD', KEYS[k], 'XX', now + lease, ARGV[i + j]) end
  if n > 0 then redis.call('PEXPIRE', KEYS[k], 2 * lease) end
  i = i + 1 + n
end
return 0
