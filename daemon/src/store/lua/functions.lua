-- The `ward` library. Rust prepends the `#!lua name=ward` line and the shared
-- constants (key shapes, FUNCTIONS_VERSION).
--
-- `ward_enqueue` takes the one key ward:{Q}:jobs, its public calling
-- convention, and derives the queue's other keys from it (the idempotency
-- key, the job record, the delayed set, the id counter): listing them in
-- KEYS would change the convention every client uses. They share the
-- stream's hash tag, so they live on the same node.
-- Optional argument `name` as a whole number of ms in [lo, hi]: nil when
-- it is absent or '', else the number, or nil and the error reply.
local function whole_ms(name, s, lo, hi)
  if s == nil or s == '' then return nil, nil end
  local n = tonumber(s)
  -- n ~= n is NaN; math.huge is an infinity.
  if n == nil or n ~= n or n == math.huge or n == -math.huge or math.floor(n) ~= n
    or n < lo or n > hi then
    return nil, redis.error_reply('ERR ward_enqueue: ' .. name .. ' must be a whole number of ms from '
      .. string.format('%d', lo) .. ' to ' .. string.format('%d', hi) .. ', not ' .. s)
  end
  return n, nil
end

-- The jobs waiting in queue `q` (its keys' start): in each level's stream
-- (`stream`, the normal one, then `:high` and `:low`), the entries not yet
-- delivered to the group `ward` (its lag; the stream's length when Redis
-- cannot tell, or before a daemon made the group), and the delayed jobs.
-- Cheap: no scan, whatever the backlog.
local function backlog_of(stream, q)
  local total = redis.call('ZCARD', q .. DELAYED_KEY)
  for _, key in ipairs({stream, stream .. HIGH_SUFFIX, stream .. LOW_SUFFIX}) do
    local waiting = nil
    local groups = redis.pcall('XINFO', 'GROUPS', key)
    if type(groups) == 'table' and groups.err == nil then
      for _, g in ipairs(groups) do
        local name, lag = nil, nil
        for k = 1, #g, 2 do
          if g[k] == 'name' then name = g[k + 1] end
          if g[k] == 'lag' then lag = g[k + 1] end
        end
        if name == 'ward' and type(lag) == 'number' then waiting = lag end
      end
    end
    if waiting == nil then waiting = redis.call('XLEN', key) end
    total = total + waiting
  end
  return total
end

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
  -- Every argument is checked before anything is written: a refused call
  -- leaves no job behind, so a client may simply try again.
  local delay, ttl, at, bad
  delay, bad = whole_ms('delay_ms', args[4], 0, tonumber(MAX_TIME_MS))
  if bad then return bad end
  ttl, bad = whole_ms('ttl_ms', args[5], 1, tonumber(MAX_TIME_MS))
  if bad then return bad end
  ttl = ttl or 86400000
  at, bad = whole_ms('at_ms', args[6], 0, tonumber(MAX_TIME_MS))
  if bad then return bad end
  -- args[7], the priority level: high | normal | low ('' is normal). It
  -- travels as the entry's `priority` field (see daemon/src/priority.rs).
  local level = args[7] or ''
  if level ~= '' and level ~= 'high' and level ~= 'normal' and level ~= 'low' then
    return redis.error_reply('ERR ward_enqueue: priority must be high, normal or low, not ' .. level)
  end
  if level == 'normal' then level = '' end
  -- args[8], the batch the job joins ('' for none): it must exist and be
  -- open. Checked after the duplicate (a client that sends an enqueue
  -- again after a lost reply hears `duplicate`, even if the batch was
  -- sealed meanwhile) and before anything is written.
  local batch = args[8] or ''
  if key ~= '' then
    local v = redis.call('GET', q .. IDEM_PREFIX .. key)
    if v then
      return {string.match(v, '^(%S+)'), 'duplicate', 0}
    end
  end
  local ledger
  if batch ~= '' then
    ledger = batch_keys(q, batch)
    local state = redis.call('HGET', ledger, 'state')
    if not state then
      return redis.error_reply('ERR ward_enqueue: batch ' .. batch .. ' does not exist in this queue; '
        .. 'create it first (ward batch create QUEUE --id ' .. batch .. '); nothing was added')
    end
    if state ~= 'open' then
      return redis.error_reply('BATCH_SEALED batch ' .. batch
        .. ' is sealed and takes no more members; nothing was added')
    end
  end
  -- Backpressure: past the queue's max_backlog (published by the daemons
  -- in ward:{Q}:limits) nothing is added. A duplicate above adds nothing
  -- either, so it is answered as before.
  local max = tonumber(redis.call('HGET', q .. LIMITS_KEY, 'max_backlog') or '')
  if max then
    local backlog = backlog_of(stream, q)
    if backlog >= max then
      return redis.error_reply('BACKPRESSURE queue backlog is ' .. string.format('%d', backlog)
        .. ' jobs, at its max_backlog of ' .. string.format('%d', max)
        .. '; nothing was added; try again later')
    end
  end
  local now = now_ms()
  local due = at
  if due == nil and delay ~= nil and delay > 0 then due = now + delay end
  local id
  if due == nil then
    local f = {'job', job, 'payload', payload}
    if key ~= '' then f[#f+1] = 'idempotency_key'; f[#f+1] = key end
    if level ~= '' then f[#f+1] = 'priority'; f[#f+1] = level end
    -- `batch` as a producer writes it (a correlation field, carried to
    -- retries and dead letters), and ENTRY.batch: counted already, so the
    -- daemon that reads it does not count it again.
    if batch ~= '' then
      f[#f+1] = 'batch'; f[#f+1] = batch; f[#f+1] = ENTRY.batch; f[#f+1] = batch
    end
    id = redis.call('XADD', stream, '*', unpack(f))
  else
    id = 'd' .. now .. '-' .. redis.call('INCR', q .. SEQ_KEY)
    local rec = q .. RECORD_PREFIX .. id
    redis.call('HSET', rec, 'state', 'queued', 'job', job, 'payload', payload,
      'next_attempt', '1', 'due_at', tostring(due), 'enqueued_at', tostring(now))
    if key ~= '' then redis.call('HSET', rec, 'x:idempotency_key', key) end
    if level ~= '' then redis.call('HSET', rec, 'x:priority', level) end
    if batch ~= '' then redis.call('HSET', rec, EXTRA_PREFIX .. 'batch', batch) end
    redis.call('ZADD', q .. DELAYED_KEY, due, id)
    redis.call('PUBLISH', q .. WAKE_KEY, tostring(due))
  end
  if key ~= '' then redis.call('SET', q .. IDEM_PREFIX .. key, id, 'PX', ttl) end
  if ledger then batch_join(ledger, q .. BATCHES_KEY, q .. BATCHES_UNFINISHED_KEY, batch, now) end
  return {id, 'created', due or 0}
end

redis.register_function('ward_enqueue', enqueue)
redis.register_function{function_name = 'ward_version', flags = {'no-writes'},
  callback = function() return FUNCTIONS_VERSION end}
