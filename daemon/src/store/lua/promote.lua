-- KEYS[1] delayed set, KEYS[2] jobs stream; ARGV[1] record prefix, ARGV[2] limit.
-- Moves due jobs back to the stream. ZREM and XADD happen in one script, so
-- two daemons promoting at once cannot both deliver the same job.
-- The job records (ARGV[1] .. id) are not in KEYS: their ids are learnt from
-- the delayed set inside the script, so the caller cannot name them. They
-- share the queue's hash tag, so they live on the same node as KEYS.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved, missing = 0, {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local rec = ARGV[1] .. id
  local f = record_entry(id, redis.call('HGETALL', rec))
  if f == nil then
    missing[#missing+1] = id
  else
    local e = redis.call('XADD', KEYS[2], '*', unpack(f))
    redis.call('HSET', rec, 'state', 'queued', 'entry', e)
    redis.call('HDEL', rec, 'due_at')
    moved = moved + 1
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if nxt[2] then next_due = tonumber(nxt[2]) end
return {moved, now, next_due, missing}
