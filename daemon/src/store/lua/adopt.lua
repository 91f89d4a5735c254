-- Takes back deliveries of this consumer that no read handed to it: a
-- read whose reply was lost (the connection dropped after Redis ran it)
-- or whose script failed after its XREADGROUP left them leased here. They
-- never ran, so they are run now rather than left to expire and be
-- charged a lost attempt.
-- KEYS[1] one of the jobs streams; ARGV[1] group, ARGV[2] consumer,
-- ARGV[3..] the candidate entry ids (pending here, not held by the daemon
-- as it last looked).
-- A candidate is taken only while it is still pending under this consumer
-- and still on its first delivery: a delivery another daemon took over
-- meanwhile, or one this daemon's reclaim took (a count past 1), is left
-- to whoever has it. XCLAIM counts the delivery, so a candidate is taken
-- back once at most. Returns the entries taken, as XCLAIM gives them.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local taken = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if p[1] ~= nil and p[1][2] == consumer and p[1][4] == 1 then
    local got = redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i])
    for _, e in ipairs(got) do taken[#taken + 1] = e end
  end
end
return taken
