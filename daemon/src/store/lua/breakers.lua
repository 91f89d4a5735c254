-- KEYS[1] the set of upstreams with a breaker; ARGV[1] breaker key prefix.
-- Returns {now_ms, upstream, failures, open_until, openings, ...}.
-- The breaker hashes (ARGV[1] .. upstream) are not in KEYS: the upstreams
-- are learnt from the set inside the script. They share the queue's hash
-- tag, so they live on the same node as KEYS[1].
-- A member whose hash has expired is removed from the set here: hashes
-- expire on their own, and the set would otherwise only ever grow.
local out = {now_ms()}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. u
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', KEYS[1], u)
  else
    local h = redis.call('HMGET', key, 'failures', 'open_until', 'openings')
    out[#out+1] = u
    out[#out+1] = tonumber(h[1] or '0')
    out[#out+1] = tonumber(h[2] or '0')
    out[#out+1] = tonumber(h[3] or '0')
  end
end
return out
