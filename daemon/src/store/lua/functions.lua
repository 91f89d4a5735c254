#!lua name=ward
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function enqueue(keys, args)
  local stream = keys[1]
  if stream == nil or string.sub(stream, -5) ~= ':jobs' or string.sub(stream, 1, 5) ~= 'ward:' then
    return redis.error_reply('ERR ward_enqueue: the one key must be ward:{QUEUE}:jobs')
  end
  local q = string.sub(stream, 1, -5)
  local job, payload = args[1], args[2] or ''
  if job == nil or job == '' then
    return redis.error_reply('ERR ward_enqueue: the first argument must be the job type')
  end
  local key = args[3] or ''
  local delay = tonumber(args[4] or '')
  local ttl = tonumber(args[5] or '') or 86400000
  local at = tonumber(args[6] or '')
  if key ~= '' then
    local v = redis.call('GET', q .. 'idem:' .. key)
    if v then
      return {string.match(v, '^(%S+)'), 'duplicate', 0}
    end
  end
  local now = now_ms()
  local due = at
  if due == nil and delay ~= nil and delay > 0 then due = now + delay end
  local id
  if due == nil then
    local f = {'job', job, 'payload', payload}
    if key ~= '' then f[#f+1] = 'idempotency_key'; f[#f+1] = key end
    id = redis.call('XADD', stream, '*', unpack(f))
  else
    id = 'd' .. now .. '-' .. redis.call('INCR', q .. 'seq')
    local rec = q .. 'job:' .. id
    redis.call('HSET', rec, 'state', 'queued', 'job', job, 'payload', payload,
      'next_attempt', '1', 'due_at', tostring(due), 'enqueued_at', tostring(now))
    if key ~= '' then redis.call('HSET', rec, 'x:idempotency_key', key) end
    redis.call('ZADD', q .. 'delayed', due, id)
    redis.call('PUBLISH', q .. 'wake', tostring(due))
  end
  if key ~= '' then redis.call('SET', q .. 'idem:' .. key, id, 'PX', ttl) end
  return {id, 'created', due or 0}
end

redis.register_function('ward_enqueue', enqueue)
redis.register_function{function_name = 'ward_version', flags = {'no-writes'},
  callback = function() return '1' end}
