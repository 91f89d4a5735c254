-- The `ward` library. Rust prepends the `#!lua name=ward` line and the shared
-- constants (key shapes, FUNCTIONS_VERSION).
--
-- `ward_enqueue` takes the one key ward:{Q}:jobs, its public calling
-- convention, and derives the queue's other keys from it (the idempotency
-- key, the job record, the delayed set, the id counter): listing them in
-- KEYS would change the convention every client uses. They share the
-- stream's hash tag, so they live on the same node.
local function enqueue(keys, args)
  local stream = keys[1]
  local suffix = ':' .. JOBS_KEY
  if stream == nil or string.sub(stream, -#suffix) ~= suffix
    or string.sub(stream, 1, #KEY_NAMESPACE) ~= KEY_NAMESPACE then
    return redis.error_reply('ERR ward_enqueue: the one key must be '
      .. KEY_NAMESPACE .. '{QUEUE}' .. suffix)
  end
  -- 'ward:{Q}:', the start of every key of the queue.
  local q = string.sub(stream, 1, -#JOBS_KEY - 1)
  local job, payload = args[1], args[2] or ''
  if job == nil or job == '' then
    return redis.error_reply('ERR ward_enqueue: the first argument must be the job type')
  end
  local key = args[3] or ''
  local delay = tonumber(args[4] or '')
  local ttl = tonumber(args[5] or '') or 86400000
  local at = tonumber(args[6] or '')
  if key ~= '' then
    local v = redis.call('GET', q .. IDEM_PREFIX .. key)
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
    id = 'd' .. now .. '-' .. redis.call('INCR', q .. SEQ_KEY)
    local rec = q .. RECORD_PREFIX .. id
    redis.call('HSET', rec, 'state', 'queued', 'job', job, 'payload', payload,
      'next_attempt', '1', 'due_at', tostring(due), 'enqueued_at', tostring(now))
    if key ~= '' then redis.call('HSET', rec, 'x:idempotency_key', key) end
    redis.call('ZADD', q .. DELAYED_KEY, due, id)
    redis.call('PUBLISH', q .. WAKE_KEY, tostring(due))
  end
  if key ~= '' then redis.call('SET', q .. IDEM_PREFIX .. key, id, 'PX', ttl) end
  return {id, 'created', due or 0}
end

redis.register_function('ward_enqueue', enqueue)
redis.register_function{function_name = 'ward_version', flags = {'no-writes'},
  callback = function() return FUNCTIONS_VERSION end}
