-- Gives back the slots of attempts that ended (fairness.rs), and for each
-- slot freed makes the job that has waited longest in its group's line due
-- at once (one per slot: no herd).
-- KEYS[1] the delayed set, then per job its group's slots and waiting line.
-- ARGV[1] the promoter's wake channel, then per job its id.
local delayed = KEYS[1]
local now = now_ms()
local woke = false
for i = 1, (#KEYS - 1) / 2 do
  local slots, waiting = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('ZREM', slots, ARGV[i + 1]) == 1 then
    for _ = 1, 4 do
      local w = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
      if w[1] == nil then break end
      if redis.call('ZSCORE', delayed, w[1]) then
        redis.call('ZADD', delayed, 'XX', now, w[1])
        redis.call('ZREM', waiting, w[1])
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
