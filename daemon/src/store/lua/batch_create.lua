-- Creates an open batch. KEYS[1] its ledger, [2] the queue's index of
-- batches, [3] its set of unfinished batches; ARGV[1] the batch id, [2]
-- its on_complete job type, [3] its on_success job type ('' for none).
-- Returns 1, or 0 when it exists already (nothing changes: a batch is
-- never reopened or reset).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'open', 'created_at', tostring(now),
  'total', '0', 'pending', '0', 'succeeded', '0', 'dead', '0', 'cancelled', '0')
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'on_complete', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'on_success', ARGV[3]) end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return 1
