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

-- The producer's names that have an argument of their own (or are the
-- entry's), so they cannot be passed as correlation fields.
local OWN_ARGUMENTS = {job = true, payload = true, idempotency_key = true, priority = true,
  batch = true}

-- args[9..]: correlation fields as name/value pairs, carried like a plain
-- XADD's extra fields (to retries, dead letters, `group_by`). Returns them
-- as a list of pairs and a table by name, or nil and the error reply.
local function correlation_fields(args)
  local list, by = {}, {}
  local n = #args - 8
  if n <= 0 then return list, by, nil end
  if n % 2 ~= 0 then
    return nil, nil, redis.error_reply('ERR ward_enqueue: correlation fields come as name value pairs '
      .. 'after the eighth argument; the last name has no value; nothing was added')
  end
  if n / 2 > MAX_EXTRA_FIELDS then
    return nil, nil, redis.error_reply('ERR ward_enqueue: at most ' .. MAX_EXTRA_FIELDS
      .. ' correlation fields, not ' .. string.format('%d', n / 2) .. '; nothing was added')
  end
  for k = 9, #args, 2 do
    local name = args[k]
    if name == '' or OWN_ARGUMENTS[name] or string.sub(name, 1, #RESERVED_PREFIX) == RESERVED_PREFIX
      or by[name] then
      local why = 'is reserved'
      if name == '' then why = 'is empty'
      elseif by[name] then why = 'is given twice'
      elseif OWN_ARGUMENTS[name] then why = 'has an argument of its own'
      else why = 'starts with ' .. RESERVED_PREFIX .. ', which is Ward\'s' end
      return nil, nil, redis.error_reply('ERR ward_enqueue: correlation field name `' .. name .. '` '
        .. why .. '; nothing was added')
    end
    list[#list+1] = name; list[#list+1] = args[k + 1]
    by[name] = args[k + 1]
  end
  return list, by, nil
end

-- A job of a grouped job type (`group_by`, published by the daemons in
-- ward:{Q}:grouping) whose group already has its cap of jobs running or on
-- their way through the stream: parked in the group's waiting line (the
-- form a daemon parks it in when it reads it), so it never sits in the
-- stream in front of other groups' jobs. Returns the group's keys and
-- whether to park, or nil for a job not limited.
local function group_of(q, job, by, now)
  local grouping = redis.call('HGET', q .. GROUPING_KEY, job)
  if not grouping then return nil end
  local cap, field = string.match(grouping, '^(%d+) (.+)$')
  local value = field and by[field]
  if not value then return nil end
  local gk = job .. ':' .. value
  local g = {slots = q .. GROUP_PREFIX .. gk, waiting = q .. GROUP_WAITING_PREFIX .. gk,
    queued = q .. GROUP_QUEUED_PREFIX .. gk}
  -- Lost counts age out (a dead daemon's slot, an entry that left the
  -- stream unread) instead of holding the group back for good.
  redis.call('ZREMRANGEBYSCORE', g.slots, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', g.queued, '-inf', now)
  local busy = redis.call('ZCARD', g.slots) + redis.call('ZCARD', g.queued)
  return g, busy >= tonumber(cap)
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
  local fields, by, bad_field = correlation_fields(args)
  if bad_field then return bad_field end
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
  local group, park = nil, false
  if due == nil then group, park = group_of(q, job, by, now) end
  local id
  if due == nil and not park then
    local f = {'job', job, 'payload', payload}
    -- ENTRY.key_claimed: the key is set to this entry below, so the daemon
    -- that reads it claims nothing (a round trip and a write per job).
    if key ~= '' then
      f[#f+1] = 'idempotency_key'; f[#f+1] = key; f[#f+1] = ENTRY.key_claimed; f[#f+1] = '1'
    end
    if level ~= '' then f[#f+1] = 'priority'; f[#f+1] = level end
    -- `batch` as a producer writes it (a correlation field, carried to
    -- retries and dead letters), and ENTRY.batch: counted already, so the
    -- daemon that reads it does not count it again.
    if batch ~= '' then
      f[#f+1] = 'batch'; f[#f+1] = batch; f[#f+1] = ENTRY.batch; f[#f+1] = batch
    end
    for k = 1, #fields do f[#f+1] = fields[k] end
    id = redis.call('XADD', stream, '*', unpack(f))
    if group then
      redis.call('ZADD', group.queued, now + tonumber(GROUP_QUEUED_TTL_MS), id)
      redis.call('PEXPIRE', group.queued, tonumber(GROUP_QUEUED_TTL_MS) + 60000)
    end
  else
    local seq = redis.call('INCR', q .. SEQ_KEY)
    id = 'd' .. now .. '-' .. seq
    if park then
      -- Back when a slot of its group frees (group_release.lua makes it
      -- due at once), or at its recheck, later the further back it waits.
      redis.call('ZADD', group.waiting, 'NX', now, id)
      redis.call('PEXPIRE', group.waiting, 86400000)
      local place = redis.call('ZRANK', group.waiting, id)
      local back = math.min(tonumber(GROUP_RECHECK_MS) + place * tonumber(GROUP_RECHECK_PER_PLACE_MS),
        tonumber(GROUP_RECHECK_MAX_MS))
      due = now + back + seq % tonumber(GROUP_RECHECK_JITTER_MS)
    end
    local h = {'state', 'queued', 'job', job, 'payload', payload,
      'next_attempt', '1', 'due_at', tostring(due), 'enqueued_at', tostring(now)}
    if key ~= '' then h[#h+1] = EXTRA_PREFIX .. 'idempotency_key'; h[#h+1] = key end
    if level ~= '' then h[#h+1] = EXTRA_PREFIX .. 'priority'; h[#h+1] = level end
    if batch ~= '' then h[#h+1] = EXTRA_PREFIX .. 'batch'; h[#h+1] = batch end
    for k = 1, #fields, 2 do
      h[#h+1] = EXTRA_PREFIX .. fields[k]; h[#h+1] = fields[k+1]
    end
    -- One write for the whole record: a parked flood is the hot path.
    redis.call('HSET', q .. RECORD_PREFIX .. id, unpack(h))
    redis.call('ZADD', q .. DELAYED_KEY, due, id)
    -- The promoter looks at the delayed set every second anyway: telling
    -- it of a parked job, due after its recheck at the soonest, only costs.
    if not park then redis.call('PUBLISH', q .. WAKE_KEY, tostring(due)) end
    -- A parked job is ready: it runs as soon as its group has room.
    if park then due = nil end
  end
  if key ~= '' then redis.call('SET', q .. IDEM_PREFIX .. key, id, 'PX', ttl) end
  if ledger then batch_join(ledger, q .. BATCHES_KEY, q .. BATCHES_UNFINISHED_KEY, batch, now) end
  return {id, 'created', due or 0}
end

redis.register_function('ward_enqueue', enqueue)
redis.register_function{function_name = 'ward_version', flags = {'no-writes'},
  callback = function() return FUNCTIONS_VERSION end}
