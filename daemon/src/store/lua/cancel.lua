-- Cancels one job, atomically: whatever it is doing, it never runs (again),
-- or, when an attempt is running, a cancel request the daemon running it acts on.
-- KEYS[1] jobs stream, [2] delayed set, [3] held set (the jobs a pause holds
-- back; a sorted set, perhaps absent), [4] cancel requests, [5] job record,
-- [6] its history, [7] and [8] the high and low priority streams.
-- ARGV[1] job id, [2] by, [3] note ('' for none), [4] history length,
-- [5] the control channel, [6] the consumer group, [7] how long a cancelled
-- job's record is kept (s).
-- Returns {'cancelled', where it waited: delayed|paused|queued}
-- | {'requested', '1' for a new request, '0' for a repeat}
-- | {'finished', its state} | {'missing', ''}.
local jobs, delayed, held, cancels, rec, hkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, by, note, hist_max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local channel, group, retired = ARGV[5], ARGV[6], tonumber(ARGV[7])
local now = now_ms()
local FINAL = {succeeded = true, dead = true, discarded = true, cancelled = true}
local state = redis.call('HGET', rec, 'state')
if state and FINAL[state] then return {'finished', state} end

local function event(ev)
  ev.by, ev.at = by, now
  if note ~= '' then ev.note = note end
  redis.call('RPUSH', hkey, cjson.encode(ev))
  redis.call('LTRIM', hkey, -hist_max, -1)
end
-- The job will never run: its record says so, and expires like a
-- discarded one's.
-- `batch` is the batch the job is a member of (nil for none); `join` when
-- its ledger never counted it (a plain XADD's entry not read yet).
local function cancelled(was, job, batch, join)
  if job then redis.call('HSETNX', rec, 'job', job) end
  if batch and batch ~= '' then
    local q = string.sub(KEYS[1], 1, -#JOBS_KEY - 1)
    local ledger, failed = batch_keys(q, batch)
    local unfinished = q .. BATCHES_UNFINISHED_KEY
    if join then batch_join(ledger, q .. BATCHES_KEY, unfinished, batch, now) end
    batch_end(ledger, failed, 'cancelled', id, '', now, KEYS[1], unfinished)
  end
  redis.call('HSET', rec, 'state', 'cancelled', 'cancelled_by', by,
    'cancelled_at', tostring(now), 'cancel_note', note)
  redis.call('HDEL', rec, 'entry', 'due_at', 'next_attempt', 'checkpoint')
  event({event = 'cancelled', was = was})
  redis.call('EXPIRE', rec, retired)
  redis.call('EXPIRE', hkey, retired)
  return {'cancelled', was}
end

-- A delayed or held job's record keeps its correlation fields, its batch
-- among them, as `x:<name>`.
local function record_batch() return redis.call('HGET', rec, EXTRA_PREFIX .. 'batch') end
if redis.call('ZREM', delayed, id) == 1 then return cancelled('delayed', nil, record_batch()) end
if redis.call('TYPE', held).ok == 'zset' and redis.call('ZREM', held, id) == 1 then
  return cancelled('paused', nil, record_batch())
end
-- A plain XADD job's id is its entry's; a re-enqueued one's record names it.
local entry = redis.call('HGET', rec, 'entry') or id
local ms, seq = string.match(entry, '^(%d+)-(%d+)$')
if not ms then return {'missing', ''} end
-- An entry id names one entry across the level streams (see lease.lua).
local found = {}
for _, s in ipairs({jobs, KEYS[7], KEYS[8]}) do
  found = redis.call('XRANGE', s, entry, entry)
  if #found > 0 then jobs = s; break end
end
if #found == 0 then return {'missing', ''} end
local fields = found[1][2]
local job, batch, counted = nil, nil, false
for k = 1, #fields, 2 do
  if fields[k] == 'job' then job = fields[k + 1] end
  if fields[k] == 'batch' then batch = fields[k + 1] end
  if fields[k] == ENTRY.id or fields[k] == ENTRY.batch then counted = true end
end
local p = redis.pcall('XPENDING', jobs, group, entry, entry, 1)
if type(p) == 'table' and p.err == nil and #p > 0 then
  -- Running (leased): the daemon that holds it interrupts the attempt and
  -- records the outcome; every daemon hears of it, or finds it on its poll.
  local new = redis.call('ZADD', cancels, 'NX', now, id)
  if not state then
    -- A first delivery has no record yet; this one says it is running.
    redis.call('HSET', rec, 'state', 'queued', 'entry', entry)
    if job then redis.call('HSET', rec, 'job', job) end
    redis.call('EXPIRE', rec, retired)
    redis.call('EXPIRE', hkey, retired)
  end
  redis.call('HSET', rec, 'cancel_requested_at', tostring(now), 'cancelled_by', by,
    'cancel_note', note)
  event({event = 'cancel requested'})
  redis.call('PUBLISH', channel, 'cancel ' .. id)
  return {'requested', tostring(new)}
end
-- Not pending: delivered and acknowledged already if the group read past it
-- (its outcome is recorded), else not yet delivered.
local last = nil
local groups = redis.pcall('XINFO', 'GROUPS', jobs)
if type(groups) == 'table' and groups.err == nil then
  for _, g in ipairs(groups) do
    local name, l = nil, nil
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] end
      if g[k] == 'last-delivered-id' then l = g[k + 1] end
    end
    if name == group then last = l end
  end
end
if last then
  local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
  local ems, eseq, lm = tonumber(ms), tonumber(seq), tonumber(lms)
  if lms and (ems < lm or (ems == lm and eseq <= tonumber(lseq))) then
    return {'finished', state or 'succeeded'}
  end
end
redis.call('XDEL', jobs, entry)
return cancelled('queued', job, batch, not counted)
