-- KEYS[1] jobs stream; ARGV: triples of job id, idempotency key, ttl (ms).
-- Claims each key for its job, or says why the job must not run:
-- 'run', 'dup <owner job id>' (a second enqueue), or 'done' (a redelivery of
-- a job that already succeeded).
local q = string.sub(KEYS[1], 1, -5)
local out = {}
for i = 1, #ARGV, 3 do
  local id, key, ttl = ARGV[i], ARGV[i+1], ARGV[i+2]
  local k = q .. 'idem:' .. key
  local v = redis.call('GET', k)
  if not v then
    redis.call('SET', k, id, 'PX', ttl)
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
