-- Ends what a batch of finished attempts held, and records the holds their
-- failures asked for, in one call per batch.
--
-- KEYS: per upstream k (from 1): KEYS[2k-1] its hash, KEYS[2k] its slot
-- holders.
-- ARGV: [1] the number of upstreams, then per upstream: a hold (ms from
-- now; 0: none), the number of slot members to release, the members.
-- A hold is set on the Redis clock and only ever extended, never
-- shortened, by another failure. The slot holders are released after the
-- hold is set, in the same step: no attempt can take a freed slot before
-- the hold is there.
-- Returns per upstream its `held_until` (ms, 0: none).
local now = now_ms()
local out = {}
local i = 2
for k = 1, tonumber(ARGV[1]) do
  local key, slots = KEYS[2 * k - 1], KEYS[2 * k]
  local hold, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local held = tonumber(redis.call('HGET', key, 'held_until') or '0') or 0
  if hold > 0 and now + hold > held then
    held = now + hold
    redis.call('HSET', key, 'held_until', held)
    redis.call('PEXPIRE', key, math.max(86400000, hold))
  end
  for j = 1, n do redis.call('ZREM', slots, ARGV[i + 1 + j]) end
  if held <= now then held = 0 end
  out[k] = held
  i = i + 2 + n
end
return out
