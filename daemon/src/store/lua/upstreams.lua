-- Reads the flow-control state of a queue's upstreams.
-- KEYS: per upstream k (from 1): KEYS[2k-1] its hash, KEYS[2k] its slot
-- holders. ARGV: per upstream: tokens per ms (0: no rate), burst.
-- Returns {now_ms, then per upstream: tokens (x1000, refilled to now; -1
-- without a rate), slots held (unexpired), held_until (0: none)}.
local now = now_ms()
local out = {now}
for k = 1, #KEYS / 2 do
  local rate, burst = tonumber(ARGV[2 * k - 1]), tonumber(ARGV[2 * k])
  local h = redis.call('HMGET', KEYS[2 * k - 1], 'tokens', 'ts', 'held_until')
  local tokens = -1
  if rate > 0 then
    local t, ts = tonumber(h[1] or ''), tonumber(h[2] or '')
    if t == nil or ts == nil then tokens = burst
    else tokens = math.min(burst, t + math.max(0, now - ts) * rate) end
    tokens = math.floor(tokens * 1000)
  end
  local held = tonumber(h[3] or '0') or 0
  if held <= now then held = 0 end
  out[#out + 1] = tokens
  out[#out + 1] = redis.call('ZCOUNT', KEYS[2 * k], '(' .. now, '+inf')
  out[#out + 1] = held
end
return out
