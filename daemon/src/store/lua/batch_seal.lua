-- Seals a batch: ward_enqueue refuses to add members from now on. KEYS[1]
-- its ledger. Returns 'sealed', 'already' or 'missing'. A batch sealed
-- with nothing pending is finished at once.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'sealed' then return 'already' end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'sealed', 'sealed_at', tostring(now))
if tonumber(redis.call('HGET', KEYS[1], 'pending') or '0') <= 0 then
  redis.call('HSETNX', KEYS[1], 'finished_at', tostring(now))
end
return 'sealed'
