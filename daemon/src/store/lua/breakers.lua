-- KEYS[1] the set of upstreams with a breaker; ARGV[1] breaker key prefix.
-- Read-only: {now_ms, upstream, failures, open_until, openings, ...}.
-- The breaker hashes (ARGV[1] .. upstream) are not in KEYS: the upstreams
-- are learnt from the set inside the script. They share the queue's hash
-- tag, so they live on the same node as KEYS[1].
local out = {now_ms()}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. u, 'failures', 'open_until', 'openings')
  out[#out+1] = u
  out[#out+1] = tonumber(h[1] or '0')
  out[#out+1] = tonumber(h[2] or '0')
  out[#out+1] = tonumber(h[3] or '0')
end
return out
