-- Gives back the slots of attempts that ended (fairness.rs), and for each
-- slot freed makes the job that has waited longest in its group's line due
-- at once (one per slot: no herd). A job woken counts as queued in the
-- stream again (ward_enqueue reads that count) until a daemon reads it.
-- KEYS[1] the delayed set, then per job its group's slots, waiting line
-- and queued jobs.
-- ARGV[1] the promoter's wake channel, ARGV[2] how long a queued job
-- counts (ms), then per job its id.
local delayed = KEYS[1]
local queued_ttl = tonumber(ARGV[2])
local now = now_ms()
local woke = false
for i = 1, (#KEYS - 1) / 3 do
  local slots, waiting, queued = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if redis.call('ZREM', slots, ARGV[i + 2]) == 1 then
    for _ = 1, 4 do
      local w = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
      if w[1] == nil then break end
      if redis.call('ZSCORE', delayed, w[1]) then
        redis.call('ZADD', delayed, 'XX', now, w[1])
        redis.call('ZREM', waiting, w[1])
        redis.call('ZADD', queued, now + queued_ttl, w[1])
        redis.call('PEXPIRE', queued, queued_ttl + 60000)
        woke = true
        break
      elseif now - tonumber(w[2]) > 5000 then
        -- Not deferred any more (it ran, was cancelled, or came back on
        -- its own): it parks again if its group is still busy.
        redis.call('ZREM', waiting, w[1])
      else
        -- Its deferral is not recorded yet; its recheck brings it back.
        break
      end
    end
  end
end
if woke then redis.call('PUBLISH', ARGV[1], tostring(now)) end
return woke and 1 or 0
