-- Seals a batch: ward_enqueue refuses to add members from now on. KEYS[1]
-- its ledger, [2] the queue's jobs stream (for its callbacks), [3] its set
-- of unfinished batches. Returns 'sealed', 'already' or 'missing'. A batch
-- sealed with nothing pending settles at once (finished; its callbacks
-- are enqueued).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'sealed' then return 'already' end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'sealed', 'sealed_at', tostring(now))
batch_settle(KEYS[1], KEYS[2], KEYS[3], now)
return 'sealed'
