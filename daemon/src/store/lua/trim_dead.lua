-- Applies a queue's dead-letter retention.
-- KEYS[1] dead stream; ARGV[1] max length or '', [2] max age (ms) or '',
-- [3] record prefix, [4] record ttl (s), [5] most entries removed per
-- limit and call, [6] history length.
-- Returns {removed by age, removed by length, more}: more is 1 when a limit
-- was hit and another call should follow. Age is measured in the Redis
-- clock against the entry id (the time of dead-lettering). The record of
-- each removed dead letter (if it still points at it) gets a TTL and a
-- history line, so memory stays bounded and `ward job show` can say why.
-- The records (ARGV[3] .. id) and their histories are not in KEYS: their
-- ids are learnt from the dead stream inside the script. They share the
-- queue's hash tag, so they live on the same node as KEYS.
local now = now_ms()
local limit, ttl, hist_max = tonumber(ARGV[5]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function retire(victims, why)
  for _, v in ipairs(victims) do
    local f = v[2]
    local id = nil
    for k = 1, #f, 2 do if f[k] == 'id' then id = f[k+1] end end
    if id then
      local rec = ARGV[3] .. id
      local de = redis.call('HGET', rec, 'dead_entry')
      -- Records written before `dead_entry` existed are matched by state.
      if de == v[1] or (not de and redis.call('HGET', rec, 'state') == 'dead') then
        redis.call('HDEL', rec, 'dead_entry')
        redis.call('HSET', rec, 'dead_trimmed', why)
        local h = rec .. HISTORY_SUFFIX
        redis.call('RPUSH', h, cjson.encode({event='trimmed', by='retention', why=why, at=now, dead_entry=v[1]}))
        redis.call('LTRIM', h, -hist_max, -1)
        redis.call('EXPIRE', rec, ttl)
        redis.call('EXPIRE', h, ttl)
      end
    end
    redis.call('XDEL', KEYS[1], v[1])
  end
  return #victims
end
local by_age, by_len, more = 0, 0, 0
if ARGV[2] ~= '' then
  local minid = string.format('%d', now - tonumber(ARGV[2]))
  local old = redis.call('XRANGE', KEYS[1], '-', '(' .. minid .. '-0', 'COUNT', limit)
  by_age = retire(old, 'dead_max_age')
  if by_age >= limit then more = 1 end
end
if ARGV[1] ~= '' then
  local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
  if excess > 0 then
    if excess > limit then more = 1; excess = limit end
    by_len = retire(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess), 'dead_max_len')
  end
end
return {by_age, by_len, more}
