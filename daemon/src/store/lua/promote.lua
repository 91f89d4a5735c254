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
  local h = redis.call('HGETALL', rec)
  local r = {}
  for k = 1, #h, 2 do r[h[k]] = h[k+1] end
  if r['job'] == nil then
    missing[#missing+1] = id
  else
    local f = {ENTRY.id, id, 'job', r['job'], 'payload', r['payload'] or '',
      ENTRY.attempt, r['next_attempt'] or '1'}
    for _, name in ipairs({'first_at', 'last_delay_ms', 'checkpoint', 'lease_expiries'}) do
      if r[name] then f[#f+1] = ENTRY[name]; f[#f+1] = r[name] end
    end
    local xp = #EXTRA_PREFIX
    for k = 1, #h, 2 do
      if string.sub(h[k], 1, xp) == EXTRA_PREFIX then
        f[#f+1] = string.sub(h[k], xp + 1); f[#f+1] = h[k+1]
      end
    end
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
