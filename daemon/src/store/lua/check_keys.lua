-- KEYS: the idempotency key of each job, in order; ARGV: pairs of job id,
-- ttl (ms), one pair per key.
-- Claims each key for its job, or says why the job must not run:
-- 'run', 'dup <owner job id>' (a second enqueue), or 'done' (a redelivery of
-- a job that already succeeded).
local out = {}
for k = 1, #KEYS do
  local id, ttl = ARGV[2*k - 1], ARGV[2*k]
  local v = redis.call('GET', KEYS[k])
  if not v then
    redis.call('SET', KEYS[k], id, 'PX', ttl)
    out[#out+1] = 'run'
  else
    local owner, state = string.match(v, '^(%S+)%s*(%S*)')
    if owner ~= id then
      out[#out+1] = 'dup ' .. owner
    elseif state == 'done' then
      out[#out+1] = 'done'
    else
      out[#out+1] = 'run'
    end
  end
end
return out
