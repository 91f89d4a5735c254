-- KEYS[1] the claim ward:{Q}:alert:<kind>:<job type>; ARGV[1] the daemon
-- claiming it, ARGV[2] for how long (ms: the alert's cooldown).
-- Every daemon of a queue sees the same queue-wide condition (a wait over
-- the promise, a stall) and may raise the same alert: the first to claim it
-- sends it, the others stay quiet until the claim expires. The holder may
-- renew its claim (a repeat of its own alert, e.g. grown past the growth
-- factor), which restarts the cooldown for the whole fleet.
-- Returns 1 when ARGV[1] holds the claim now, else 0.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
