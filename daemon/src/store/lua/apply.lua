-- Applies a batch of finished attempts. The argument layout is defined once,
-- in `store/apply/layout.rs`; the encoder prepends it to this script as one
-- local per field, named after its part (QKEY, BKEY, CKEY, HEAD, FRESH,
-- FULL) and the field (`FRESH_entry` is the position of a fresh
-- completion's entry id), and each part's length (`QKEY_N`, ...): locals,
-- not tables, because the loop reads a dozen positions per completion and
-- a table lookup each was measurable. Read every argument through them: a
-- unit test fails on a position written here or a name the encoder does
-- not know.
--
-- KEYS: the queue's keys (QKEY: jobs stream, dead stream, delayed set, the
-- count of acknowledged entries still in the stream, the cancel requests,
-- ..., the streams of the high and low priority levels, the set of
-- unfinished batches, the time of the queue's last recorded outcome), then per batch
-- the completions belong to (HEAD_batches of them) its keys (BKEY: its
-- ledger and its failed members, see batch_ledger.lua), then per completion,
-- in order, its keys: for a fresh success (FKEY) its record and, when it
-- has one, its idempotency key; for any other kind (CKEY) its record, its
-- history and, when it has one, its idempotency key. Redis Cluster and proxies route on them.
-- ARGV: HEAD (group, succeeded ttl in s (0: keep no record of a succeeded
-- job), queue, history length, wake channel, most acknowledged entries left
-- in the stream before they are deleted one by one, the number of batches,
-- the number of plugin digests), those digests, then the completions, each
-- starting with its kind. A completion's `batch` is a 1-based index into
-- the batches (0: none); its member's ledger moves from pending to
-- succeeded, dead or cancelled in the same step as the outcome it records
-- (a retry or a hold leaves it pending).
--
-- kind 'f' (a first delivery that succeeded at once, the common case, kept
-- short): the FRESH fields up to `idem`; when the key is not '' the rest too.
-- `plugin` is a 1-based index into the digests.
--
-- kinds ok|retry|dead|dup|cancel|hold: the FULL fields, then `extras`
-- name/value pairs, then `follow_ons` times the FOLLOW fields (jobs an `ok`
-- enqueues with its acknowledgement, see follow_on.lua). `result_ttl` (s,
-- 0: the queue's `ttl`) is how long an `ok` keeps its record and result;
-- `result_note` says why a result was not kept. A retry or dead letter of a job whose record carries a
-- cancel request (`cancel_requested_at`, see cancel.lua) is recorded as
-- cancelled instead; a success stays a success (it finished first).
-- A hold is a job not run while its job type, queue or batch is paused: it goes
-- to the held set (QKEY_held) with its record saying `paused`, unless the
-- pause (QKEY_paused) is gone by now, when it goes back to the stream.
-- For dup, `reason` holds the id of the job that owns the idempotency key.
-- `dead_payload` is what the dead-letter entry shows of the payload
-- (redacted in Rust; '' unless kind is dead); the record keeps the original
-- `payload`. A dead letter's entry id is stored in the record as `dead_entry`.
-- Locals, not globals: the loop below reads ARGV and KEYS a dozen times
-- per completion and calls Redis three times for the common one, and each
-- global is a table lookup.
local ARGV, KEYS, call = ARGV, KEYS, redis.call
local jobs, dead, delayed, acked_key = KEYS[QKEY_jobs], KEYS[QKEY_dead], KEYS[QKEY_delayed], KEYS[QKEY_acked]
local cancels, retired = KEYS[QKEY_cancels], tonumber(ARGV[HEAD_retired_ttl])
local held, paused = KEYS[QKEY_held], KEYS[QKEY_paused]
local group, ttl, queue = ARGV[HEAD_group], tonumber(ARGV[HEAD_ttl]), ARGV[HEAD_queue]
-- The TTL as sent, for EXPIRE: a Lua number would be formatted back into
-- a string for every record.
local ttl_arg = ARGV[HEAD_ttl]
local hist_max, wake = tonumber(ARGV[HEAD_history_max]), ARGV[HEAD_wake]
local acked_max, nd = tonumber(ARGV[HEAD_acked_max]), tonumber(ARGV[HEAD_digests])
local nb = tonumber(ARGV[HEAD_batches])
-- By the index as the completions write it ('1', '2', ...): no tonumber per job.
local digests = {}
for k = 1, nd do digests[tostring(k)] = ARGV[HEAD_digests + k] end
local now = now_ms()
-- 'ward:{Q}:', the start of every key of the queue (follow_on.lua derives
-- keys from it).
local qprefix = string.sub(jobs, 1, -#JOBS_KEY - 1)
-- Every completion that cannot be recorded is dead-lettered instead (below),
-- so the dead stream must take entries: checked before anything is
-- acknowledged, so a batch that fails here changes nothing.
local dead_type = call('TYPE', dead)
dead_type = dead_type.ok or dead_type
if dead_type ~= 'stream' and dead_type ~= 'none' then
  return redis.error_reply('ERR ward: ' .. dead .. ' holds a ' .. dead_type
    .. ', not a stream; nothing was recorded')
end
-- took[k] is '1' when the k-th completion took effect, '0' when its delivery
-- was no longer pending (another daemon recorded it, or a re-sent batch),
-- 'e' when it was acknowledged but Redis refused to record its outcome, so
-- it was dead-lettered with the reason (its `unrecordable` line says why).
local applied, earliest, kept, took, unrecordable = 0, nil, 0, {}, {}
-- #took, counted (the length operator searches the table each time).
local ntook = 0
-- Acknowledged entries are normally left for the XTRIM below, which removes
-- them for a fraction of XDEL's cost (XDEL seeks through the entry's node
-- for every id). Behind an attempt that runs for a long time they cannot be
-- trimmed; once too many wait there, they are deleted one by one again.
local acked_left = tonumber(call('GET', acked_key) or '0')
local delete_each = acked_left >= acked_max
local levels = {KEYS[QKEY_jobs_high], KEYS[QKEY_jobs_low]}
-- An entry id names one entry across the level streams (see lease.lua): a
-- delivery not pending in the normal stream may be one of another level's,
-- whose stream only holds what is still to run (deleted as acknowledged).
local function ack_level(entry)
  for _, s in ipairs(levels) do
    if redis.pcall('XACK', s, group, entry) == 1 then
      call('XDEL', s, entry)
      return true
    end
  end
  return false
end
local function ack(entry)
  ntook = ntook + 1
  if call('XACK', jobs, group, entry) ~= 1 then
    if ack_level(entry) then
      applied = applied + 1
      took[ntook] = '1'
      return true
    end
    took[ntook] = '0'
    return false
  end
  applied = applied + 1
  took[ntook] = '1'
  if delete_each then
    call('XDEL', jobs, entry)
  else
    kept = kept + 1
  end
  return true
end
-- Completion is recorded with the acknowledgement, in one step: a
-- redelivery after this point is acked as a duplicate, never re-run.
local function mark_done(ikey, id, digest, key_ttl)
  local v = id .. ' done ' .. digest
  -- The claim (at enqueue or lease) set the key with its TTL: keep it. A
  -- key that has gone meanwhile is set again with the job type's TTL.
  if not call('SET', ikey, v, 'XX', 'KEEPTTL') then
    call('SET', ikey, v, 'PX', key_ttl)
  end
end
-- The name/value pairs that follow the FULL fields of the completion at i.
local function extras(i, n)
  local out = {}
  for j = 1, 2 * n do out[j] = ARGV[i + FULL_extras + j] end
  return out
end
-- Whether the current completion's member has left `pending` in its
-- ledger: the unrecordable path below ends it as dead if not.
local batch_done = false
-- Member `id` of the batch at position `b` (0: none) ended with `outcome`.
local function batch_ended(b, outcome, id, failure)
  if b == 0 then return end
  local k = QKEY_N + BKEY_N * (b - 1)
  batch_end(KEYS[k + BKEY_ledger], KEYS[k + BKEY_failed], outcome, id, failure or '', now, jobs,
    KEYS[QKEY_batches_unfinished])
  batch_done = true
end
-- A first delivery that succeeded at once has no record, history or retry
-- state to tidy: its id is its entry id. It writes no history line either:
-- its record tells all that line would (the job show makes it up from
-- the record), and a list per job was a third of what a keyed job cost.
local function fresh(i, kc, keyed)
  local entry, job = ARGV[i + FRESH_entry], ARGV[i + FRESH_job]
  local first_at, finished = ARGV[i + FRESH_first_at], ARGV[i + FRESH_finished]
  local digest, result = digests[ARGV[i + FRESH_plugin]], ARGV[i + FRESH_result]
  -- Only a delivery that is still pending may change its job, so a batch
  -- re-sent after a lost reply changes nothing twice.
  if not ack(entry) then return end
  local b = ARGV[i + FRESH_batch]
  if b ~= '0' then batch_ended(tonumber(b), 'succeeded', entry) end
  local rec = KEYS[kc + FKEY_record]
  if ttl > 0 then
    call('HSET', rec, 'state', 'succeeded', 'job', job, 'attempts', '1',
      'first_at', first_at, 'last_at', finished, 'plugin', digest)
    if result ~= '' then call('HSET', rec, 'result', result) end
    call('EXPIRE', rec, ttl_arg)
  end
  if keyed then
    mark_done(KEYS[kc + FKEY_idem], entry, ARGV[i + FRESH_result_digest], ARGV[i + FRESH_idem_ttl])
  end
end
-- A retry: the record keeps what the next attempt needs; the job goes back
-- to the stream now, or to the delayed set until it is due.
local function retry(i, n, rec, c)
  local next_attempt = tostring(tonumber(c.attempt) + 1)
  local ckpt = ARGV[i + FULL_checkpoint]
  local has_ckpt = ARGV[i + FULL_has_checkpoint] == '1'
  local delay = tonumber(ARGV[i + FULL_delay])
  local expiries = ARGV[i + FULL_lease_expiries]
  local x = extras(i, n)
  call('HSET', rec, 'next_attempt', next_attempt, 'last_delay_ms', tostring(delay),
    'lease_expiries', expiries)
  if has_ckpt then call('HSET', rec, 'checkpoint', ckpt) end
  for k = 1, #x, 2 do call('HSET', rec, EXTRA_PREFIX .. x[k], x[k+1]) end
  if delay <= 0 then
    local f = {ENTRY.id, c.id, 'job', c.job, 'payload', c.payload, ENTRY.attempt, next_attempt,
      ENTRY.first_at, c.first_at, ENTRY.last_delay_ms, '0', ENTRY.lease_expiries, expiries}
    if has_ckpt then f[#f+1] = ENTRY.checkpoint; f[#f+1] = ckpt end
    for k = 1, #x do f[#f+1] = x[k] end
    local e = call('XADD', jobs, '*', unpack(f))
    call('HSET', rec, 'state', 'queued', 'entry', e)
    call('HDEL', rec, 'due_at')
  else
    -- Due times come from the Redis clock, so daemons with skewed
    -- clocks still agree on when a retry is due.
    local due = now + delay
    call('ZADD', delayed, due, c.id)
    call('HSET', rec, 'state', 'retrying', 'due_at', tostring(due))
    call('HDEL', rec, 'entry')
    if earliest == nil or due < earliest then earliest = due end
  end
end
-- A dead letter: an entry in the dead stream (the failure, then the
-- correlation fields), and the record says where it went.
local function dead_letter(i, n, rec, c)
  local reason = ARGV[i + FULL_reason]
  local first = call('HGET', rec, 'first_at') or ''
  local f = {'id', c.id, 'job', c.job, 'queue', queue, 'reason', reason, 'class', c.class,
    'code', ARGV[i + FULL_code], 'message', ARGV[i + FULL_message],
    'upstream', ARGV[i + FULL_upstream], 'attempts', c.attempt,
    'first_at', first, 'last_at', c.finished, 'plugin', c.digest, 'entry', c.entry,
    'payload', ARGV[i + FULL_dead_payload]}
  local x = extras(i, n)
  -- A correlation field named like one of the dead letter's own (a
  -- producer's `id`) is kept beside it, as `x:id`.
  for k = 1, #x, 2 do
    if DEAD_ENTRY_FIELDS[x[k]] then f[#f+1] = EXTRA_PREFIX .. x[k] else f[#f+1] = x[k] end
    f[#f+1] = x[k+1]
  end
  local d = call('XADD', dead, '*', unpack(f))
  call('HSET', rec, 'state', 'dead', 'dead_reason', reason, 'dead_entry', d)
  call('HDEL', rec, 'entry', 'due_at', 'next_attempt')
  batch_ended(tonumber(ARGV[i + FULL_batch]), 'dead', c.id, cjson.encode({class = c.class,
    code = ARGV[i + FULL_code], message = string.sub(ARGV[i + FULL_message], 1, 512),
    reason = reason, attempts = tonumber(c.attempt), at = now}))
end
-- An operator's cancel, honoured: the job is final, its record says who
-- (from the request) and when, and expires like a discarded job's.
local function cancelled(rec, hkey, c, b)
  call('ZREM', cancels, c.id)
  batch_ended(b, 'cancelled', c.id)
  call('HSET', rec, 'state', 'cancelled', 'cancelled_at', tostring(now))
  call('HDEL', rec, 'entry', 'due_at', 'next_attempt', 'checkpoint')
  local ev = {event = 'cancelled', by = call('HGET', rec, 'cancelled_by') or '',
    at = now, attempt = tonumber(c.attempt)}
  local note = call('HGET', rec, 'cancel_note')
  if note and note ~= '' then ev.note = note end
  call('RPUSH', hkey, cjson.encode(ev))
  call('LTRIM', hkey, -hist_max, -1)
  call('EXPIRE', rec, retired)
  call('EXPIRE', hkey, retired)
end
-- A job held back while its job type or queue is paused: the record keeps
-- what a release needs to run it again as the same attempt (as
-- `record_entry` reads it); its last error and times stay as they were.
local function hold(i, n, rec, hkey, c, hist)
  if c.first_at ~= '0' then call('HSETNX', rec, 'first_at', c.first_at) end
  call('HSET', rec, 'state', 'paused', 'job', c.job, 'attempts', c.attempt,
    'payload', c.payload, 'next_attempt', tostring(tonumber(c.attempt) + 1),
    'lease_expiries', ARGV[i + FULL_lease_expiries], 'paused_at', tostring(now))
  if ARGV[i + FULL_has_checkpoint] == '1' then
    call('HSET', rec, 'checkpoint', ARGV[i + FULL_checkpoint])
  end
  local x = extras(i, n)
  for k = 1, #x, 2 do call('HSET', rec, EXTRA_PREFIX .. x[k], x[k+1]) end
  call('HDEL', rec, 'entry', 'due_at')
  call('RPUSH', hkey, hist)
  call('LTRIM', hkey, -hist_max, -1)
  call('ZADD', held, now, c.id)
end
-- Every kind but a fresh success.
local function full(kind, i, n, kc, keyed)
  local c = {entry = ARGV[i + FULL_entry], id = ARGV[i + FULL_id], job = ARGV[i + FULL_job],
    attempt = ARGV[i + FULL_attempt], finished = ARGV[i + FULL_finished],
    payload = ARGV[i + FULL_payload], class = ARGV[i + FULL_class],
    digest = ARGV[i + FULL_plugin], first_at = ARGV[i + FULL_first_at]}
  if not ack(c.entry) then return end
  local batch = tonumber(ARGV[i + FULL_batch])
  local rec, hkey = KEYS[kc + CKEY_record], KEYS[kc + CKEY_history]
  local hist = ARGV[i + FULL_history]
  local function done()
    if keyed then
      mark_done(KEYS[kc + CKEY_idem], c.id, ARGV[i + FULL_result_digest], ARGV[i + FULL_idem_ttl])
    end
  end
  if kind == 'hold' then
    -- Checked here, in the same step as the hold: a resume removes the
    -- pause before it releases the held set, so no job is held after it.
    local member = nil
    local x = extras(i, n)
    for k = 1, #x, 2 do if x[k] == 'batch' then member = x[k + 1] end end
    if held_back(paused, c.job, now, member) then return hold(i, n, rec, hkey, c, hist) end
    kind = 'retry'
  end
  if kind == 'dup' then
    -- Nothing ran. A redelivery of a completed job leaves its record as it
    -- is; a second enqueue of the same key ends as a duplicate of the first.
    -- A queue that keeps no records of succeeded jobs keeps none of these.
    local owner = ARGV[i + FULL_reason]
    -- A second job with a key already used ends here, as a success of
    -- the first; a redelivery of a job that ended was counted then.
    if owner ~= c.id then batch_ended(batch, 'succeeded', c.id) end
    if ttl > 0 then
      call('RPUSH', hkey, hist)
      call('LTRIM', hkey, -hist_max, -1)
    end
    if owner ~= c.id and ttl > 0 then
      call('HSET', rec, 'state', 'succeeded', 'job', c.job, 'duplicate_of', owner,
        'attempts', '0', 'last_at', c.finished)
      call('EXPIRE', rec, ttl)
      call('EXPIRE', hkey, ttl)
    end
    return
  end
  -- Follow-ons join their batch before this member leaves it, so a next
  -- stage keeps the batch open.
  if kind == 'ok' then
    local m = tonumber(ARGV[i + FULL_follow_ons])
    if m > 0 then
      follow_ons(qprefix, jobs, KEYS[QKEY_batches_unfinished], c.id, extras(i, n),
        i + FULL_extras + 2 * n, m, ARGV[i + FULL_idem_ttl], now)
    end
    batch_ended(batch, 'succeeded', c.id)
  end
  -- A job type's result_ttl keeps its succeeded records that long instead.
  local keep = ttl
  if kind == 'ok' and tonumber(ARGV[i + FULL_result_ttl]) > 0 then
    keep = tonumber(ARGV[i + FULL_result_ttl])
  end
  if kind == 'ok' and keep == 0 then
    -- The queue keeps no record of succeeded jobs: the one this job had
    -- while it was retried goes, its idempotency key stays.
    done()
    call('DEL', rec, hkey)
    return
  end
  if c.first_at ~= '0' then call('HSETNX', rec, 'first_at', c.first_at) end
  call('HSET', rec, 'job', c.job, 'attempts', c.attempt, 'last_at', c.finished)
  if c.digest ~= '' then call('HSET', rec, 'plugin', c.digest) end
  call('RPUSH', hkey, hist)
  call('LTRIM', hkey, -hist_max, -1)
  if kind == 'ok' then
    local result, note = ARGV[i + FULL_result], ARGV[i + FULL_result_note]
    call('HSET', rec, 'state', 'succeeded')
    call('HDEL', rec, 'checkpoint', 'entry', 'payload', 'due_at', 'next_attempt')
    if result ~= '' then call('HSET', rec, 'result', result) end
    if note ~= '' then call('HSET', rec, 'result_note', note) end
    done()
    call('EXPIRE', rec, keep)
    call('EXPIRE', hkey, keep)
    return
  end
  call('HSET', rec, 'payload', c.payload, 'last_class', c.class,
    'last_code', ARGV[i + FULL_code], 'last_message', ARGV[i + FULL_message],
    'last_upstream', ARGV[i + FULL_upstream])
  if kind == 'cancel' or call('HEXISTS', rec, 'cancel_requested_at') == 1 then
    cancelled(rec, hkey, c, batch)
  elseif kind == 'retry' then
    retry(i, n, rec, c)
  else
    dead_letter(i, n, rec, c)
  end
end
-- Records every completion from ARGV position `at.i` (its keys from `at.kc`)
-- on. The acknowledgement of each comes first (it is the guard against
-- recording twice), and Redis does not roll a script back: a write it
-- refuses after that (a key of the wrong type, an expiry it cannot take)
-- would leave the job acknowledged and unrecorded. So the whole loop runs
-- under one pcall (one per batch, not per job: this is the hot path), and
-- `at_i` always says which completion is being recorded and where the next
-- one starts; a completion that fails after its acknowledgement is
-- dead-lettered instead, with Redis' words, and the loop goes on after it.
-- A failure before the acknowledgement fails the script, as before, with
-- nothing of that completion changed.
-- Upvalues, not table fields: written for every completion.
local at_i, at_kc, at_acked, next_i, next_kc = HEAD_N + nd + 1, QKEY_N + BKEY_N * nb, 0, 0, 0
local nargv = #ARGV
local function record_all()
  while at_i <= nargv do
    local i, kc = at_i, at_kc
    at_acked = applied
    batch_done = false
    if ARGV[i] == 'f' then
      local keyed = ARGV[i + FRESH_idem] ~= ''
      if keyed then
        next_i, next_kc = i + FRESH_N + 1, kc + FKEY_N
      else
        next_i, next_kc = i + FRESH_idem + 1, kc + FKEY_record
      end
      fresh(i, kc, keyed)
    else
      local keyed = ARGV[i + FULL_idem] ~= ''
      local n = tonumber(ARGV[i + FULL_extras])
      next_i = i + FULL_extras + 2 * n + FOLLOW_N * tonumber(ARGV[i + FULL_follow_ons]) + 1
      if keyed then next_kc = kc + CKEY_N else next_kc = kc + CKEY_history end
      full(ARGV[i], i, n, kc, keyed)
    end
    at_i, at_kc = next_i, next_kc
  end
end
while true do
  local ok, err = pcall(record_all)
  if ok then break end
  if applied == at_acked then error(err) end
  local i = at_i
  local why = type(err) == 'table' and (err.err or '?') or tostring(err)
  local entry, id, job, payload, b
  if ARGV[i] == 'f' then
    entry = ARGV[i + FRESH_entry]
    id, job, payload = entry, ARGV[i + FRESH_job], ''
    b = tonumber(ARGV[i + FRESH_batch])
  else
    entry, id = ARGV[i + FULL_entry], ARGV[i + FULL_id]
    job, payload = ARGV[i + FULL_job], ARGV[i + FULL_payload]
    b = tonumber(ARGV[i + FULL_batch])
  end
  took[ntook] = 'e'
  unrecordable[#unrecordable+1] = id .. ' ' .. why
  local d = call('XADD', dead, '*', 'id', id, 'job', job, 'queue', queue,
    'reason', 'unrecordable', 'class', 'crash', 'code', 'unrecordable',
    'message', 'the outcome could not be recorded in Redis: ' .. why,
    'entry', entry, 'last_at', tostring(now), 'payload', payload)
  -- So that `ward job show` finds it where it went, if Redis takes this
  -- much (the record may be the very key it refused).
  local rec
  if ARGV[i] == 'f' then rec = KEYS[at_kc + FKEY_record] else rec = KEYS[at_kc + CKEY_record] end
  pcall(call, 'HSET', rec, 'state', 'dead', 'dead_reason', 'unrecordable',
    'dead_entry', d, 'job', job)
  -- Dead as far as its batch knows, unless it had ended there already.
  if not batch_done then
    pcall(batch_ended, b, 'dead', id, cjson.encode({class = 'crash', code = 'unrecordable',
      message = 'the outcome could not be recorded in Redis: ' .. why, reason = 'unrecordable',
      at = now}))
  end
  at_i, at_kc = next_i, next_kc
end
if applied > 0 then
  -- Entries are delivered in id order, so every entry before the oldest
  -- pending one was delivered and has been acknowledged; with nothing
  -- pending, that holds for every entry up to the group's last delivered
  -- one. Entries after it (not yet delivered, or just added as retries)
  -- are never touched.
  local minid = nil
  local p = redis.pcall('XPENDING', jobs, group)
  if type(p) == 'table' and p.err == nil then
    if tonumber(p[1]) > 0 then
      minid = p[2]
    else
      for _, g in ipairs(call('XINFO', 'GROUPS', jobs)) do
        local name, last = nil, nil
        for k = 1, #g, 2 do
          if g[k] == 'name' then name = g[k + 1] end
          if g[k] == 'last-delivered-id' then last = g[k + 1] end
        end
        if name == group and last then
          local ms, seq = string.match(last, '^(%d+)-(%d+)$')
          -- Sequence numbers past 2^53 lose precision in Lua; keep that entry.
          if ms and #seq < 15 then minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end
        end
      end
    end
  end
  -- While entries are pending, an approximate trim frees whole nodes only
  -- and costs next to nothing; once nothing is pending, an exact one
  -- leaves the stream holding only what is still to be delivered.
  local trimmed = 0
  if minid and tonumber(p[1]) > 0 then
    trimmed = call('XTRIM', jobs, 'MINID', '~', minid)
  elseif minid then
    trimmed = call('XTRIM', jobs, 'MINID', minid)
  end
  acked_left = acked_left + kept - trimmed
  if minid and tonumber(p[1]) == 0 then acked_left = 0 end
  if acked_left < 0 then acked_left = 0 end
  call('SET', acked_key, tostring(acked_left))
end
-- The queue moves: what the `stalled` alert watches, fleet-wide.
if applied > 0 then call('SET', KEYS[QKEY_progress], tostring(now)) end
if earliest ~= nil then call('PUBLISH', wake, tostring(earliest)) end
return {table.concat(took), unpack(unrecordable)}
