-- Creates an open batch. KEYS[1] its ledger, [2] the queue's index of
-- batches; ARGV[1] the batch id. Returns 1, or 0 when it exists already
-- (nothing changes: a batch is never reopened or reset).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'open', 'created_at', tostring(now),
  'total', '0', 'pending', '0', 'succeeded', '0', 'dead', '0', 'cancelled', '0')
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1
