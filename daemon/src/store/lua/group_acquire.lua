-- Takes a slot of its group for each job of a batch (fairness.rs).
-- KEYS: per job, its group's slots (job id -> expiry, ms) and waiting line
-- (job id -> since, ms). ARGV: per job, its id, the group's cap, how long
-- the slot lasts (ms) unless given back.
-- Returns per job -1 (slot taken: run it) or its place in its group's
-- waiting line, from 0 (group busy: parked, keeping its place if it was
-- there already).
local now = now_ms()
local out, swept = {}, {}
for i = 1, #KEYS / 2 do
  local slots, waiting = KEYS[2 * i - 1], KEYS[2 * i]
  local id, cap, ttl = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  -- Slots of attempts whose daemon died come back once expired.
  if not swept[slots] then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    swept[slots] = true
  end
  -- A redelivery of a job that holds a slot keeps it.
  if redis.call('ZSCORE', slots, id) or redis.call('ZCARD', slots) < cap then
    redis.call('ZADD', slots, now + ttl, id)
    redis.call('PEXPIRE', slots, ttl + 60000)
    redis.call('ZREM', waiting, id)
    out[i] = -1
  else
    redis.call('ZADD', waiting, 'NX', now, id)
    redis.call('PEXPIRE', waiting, 86400000)
    out[i] = redis.call('ZRANK', waiting, id)
  end
end
return out
