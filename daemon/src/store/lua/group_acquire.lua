-- Takes a slot of its group for each job of a batch (fairness.rs).
-- KEYS: per job, its group's slots (job id -> expiry, ms), waiting line
-- (job id -> since, ms) and jobs queued in the stream (job id -> until
-- when it counts, ms). ARGV: per job, its id, the group's cap, how long
-- the slot lasts (ms) unless given back.
-- Returns per job -1 (slot taken: run it) or its place in its group's
-- waiting line, from 0 (group busy: parked, keeping its place if it was
-- there already).
local now = now_ms()
local out, swept = {}, {}
for i = 1, #KEYS / 3 do
  local slots, waiting, queued = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local id, cap, ttl = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  -- Slots of attempts whose daemon died come back once expired.
  if not swept[slots] then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    swept[slots] = true
  end
  -- Read: no longer on its way through the stream (ward_enqueue counts
  -- it there until now).
  redis.call('ZREM', queued, id)
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
