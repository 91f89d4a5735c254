-- An operator's override of one breaker.
-- KEYS[1] the set of upstreams with a breaker, KEYS[2] this upstream's
-- breaker hash; ARGV[1] upstream, [2] 'open' or 'close', [3] open for (ms),
-- [4] who, [5] why.
-- open: open until now + ARGV[3], whatever it counted; once that time is up
-- it is half open, as after any opening (so the hash outlives the opening).
-- close: forget it all: closed, no failures counted.
-- Returns {1 if it was open before, open_until_ms (0 when closed)}.
local now = now_ms()
local before = tonumber(redis.call('HGET', KEYS[2], 'open_until') or '0')
local was_open = 0
if before > now then was_open = 1 end
if ARGV[2] == 'close' then
  redis.call('DEL', KEYS[2])
  return {was_open, 0}
end
local open_for = tonumber(ARGV[3])
local ou = now + open_for
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'open_until', ou, 'window_until', ou, 'opened_at', now,
  'forced_by', ARGV[4], 'forced_note', ARGV[5])
redis.call('HSETNX', KEYS[2], 'failures', 0)
redis.call('HINCRBY', KEYS[2], 'openings', 1)
redis.call('PEXPIRE', KEYS[2], open_for * 2 + 600000)
return {was_open, ou}
