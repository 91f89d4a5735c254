-- Ledger retention: removes the ledgers of batches that finished (sealed,
-- nothing pending) before ARGV[2] (Unix ms), with their failed and joined members,
-- their index entry and their pause. KEYS[1] the queue's index of batches
-- (id -> created ms), KEYS[2] its paused hash; ARGV[1] the start of the
-- queue's keys ('ward:{Q}:'), ARGV[3] the index position to start at,
-- ARGV[4] how many ids to look at. The ledgers are not in KEYS: their ids
-- are learnt from the index inside the script; they share the queue's hash
-- tag, so they live on the same node. A batch that ended before the cut
-- was created before it, so only those ids are read. One script per
-- call: a requeue that makes a finished batch pending again cannot slip
-- between the check and the delete.
-- Returns {removed, looked at, kept (the next call starts that much later)}.
local index, paused = KEYS[1], KEYS[2]
local q, cut = ARGV[1], tonumber(ARGV[2])
local from, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = redis.call('ZRANGE', index, '-inf', cut, 'BYSCORE', 'LIMIT', from, limit)
local removed, kept = 0, 0
for _, id in ipairs(ids) do
  local ledger, failed, joined = batch_keys(q, id)
  local v = redis.call('HMGET', ledger, 'finished_at', 'pending', 'state')
  local finished, pending = tonumber(v[1] or ''), tonumber(v[2] or '0')
  if v[3] == false then
    -- Deleted by hand: only its index entry was left.
    redis.call('ZREM', index, id)
    removed = removed + 1
  elseif v[3] == 'sealed' and finished and finished <= cut and pending == 0 then
    redis.call('DEL', ledger, failed, joined)
    redis.call('ZREM', index, id)
    redis.call('HDEL', paused, BATCH_PAUSE_PREFIX .. id)
    removed = removed + 1
  else
    kept = kept + 1
  end
end
return {removed, #ids, kept}
