-- KEYS[1] jobs stream, KEYS[2] dead stream, KEYS[3] delayed set, KEYS[4] the
-- count of acknowledged entries still in the stream.
-- ARGV[1] group, [2] record prefix, [3] succeeded ttl (s; 0: keep no record
-- of a succeeded job), [4] queue,
-- [5] history length, [6] wake channel, [7] most acknowledged entries left
-- in the stream before they are deleted one by one, [8] nd, then nd plugin
-- digests; then the completions, each starting with its kind.
--
-- kind 'f' (a first delivery that succeeded at once, the common case, kept
-- short): entry, job, first_at, finished, digest index (1-based), result,
-- idempotency key; when the key is not '': idempotency ttl (ms), result
-- digest, history line.
--
-- kinds ok|retry|dead|dup: 25 fixed fields and n extra name/value pairs.
-- The fixed fields, from 0: entry, id, job, attempt, started, finished,
-- payload, result, class, code, message, upstream, reason, plugin digest,
-- has checkpoint, checkpoint, first_at, delay, history line, idempotency
-- key, idempotency ttl (ms), result digest, lease expiries, dead payload, n.
-- For dup, `reason` holds the id of the job that owns the idempotency key.
-- The dead payload (field 23) is what the dead-letter entry shows of the
-- payload (redacted in Rust; '' unless kind is dead); the record keeps the
-- original payload (field 6). A dead letter's entry id is stored in the
-- record as `dead_entry`.
local group, prefix, ttl, queue = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local hist_max, wake, acked_max = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local nd = tonumber(ARGV[8])
local digests = {}
for k = 1, nd do digests[k] = ARGV[8 + k] end
-- 'ward:{Q}:' — every key of the queue starts with it.
local prefix_q = string.sub(prefix, 1, -5)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead_fields = {id=1, job=1, queue=1, reason=1, class=1, code=1, message=1,
  upstream=1, attempts=1, first_at=1, last_at=1, plugin=1, payload=1, entry=1}
-- took[k] is '1' when the k-th completion took effect, '0' when its delivery
-- was no longer pending (another daemon recorded it, or a re-sent batch).
local applied, earliest, kept, took = 0, nil, 0, {}
-- Acknowledged entries are normally left for the XTRIM below, which removes
-- them for a fraction of XDEL's cost (XDEL seeks through the entry's node
-- for every id). Behind an attempt that runs for a long time they cannot be
-- trimmed; once too many wait there, they are deleted one by one again.
local acked_left = tonumber(redis.call('GET', KEYS[4]) or '0')
local delete_each = acked_left >= acked_max
local function ack(entry)
  if redis.call('XACK', KEYS[1], group, entry) ~= 1 then
    took[#took+1] = '0'
    return false
  end
  applied = applied + 1
  took[#took+1] = '1'
  if delete_each then
    redis.call('XDEL', KEYS[1], entry)
  else
    kept = kept + 1
  end
  return true
end
-- Completion is recorded with the acknowledgement, in one step: a
-- redelivery after this point is acked as a duplicate, never re-run.
local function mark_done(key, id, digest, key_ttl)
  local ikey = prefix_q .. 'idem:' .. key
  local v = id .. ' done ' .. digest
  -- The claim (at enqueue or lease) set the key with its TTL: keep it. A
  -- key that has gone meanwhile is set again with the job type's TTL.
  if not redis.call('SET', ikey, v, 'XX', 'KEEPTTL') then
    redis.call('SET', ikey, v, 'PX', key_ttl)
  end
end
local i = 9 + nd
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'f' then
    local entry, job, first_at, finished = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
    local digest, result, idem = digests[tonumber(ARGV[i+5])], ARGV[i+6], ARGV[i+7]
    local x = i + 8
    if idem ~= '' then i = x + 3 else i = x end
    -- Only a delivery that is still pending may change its job, so a batch
    -- re-sent after a lost reply changes nothing twice.
    if ack(entry) then
      -- A first delivery that succeeded at once has no record, history or
      -- retry state to tidy: its id is its entry id.
      local rec = prefix .. entry
      if ttl > 0 then
        redis.call('HSET', rec, 'state', 'succeeded', 'job', job, 'attempts', '1',
          'first_at', first_at, 'last_at', finished, 'plugin', digest)
        if result ~= '' then redis.call('HSET', rec, 'result', result) end
        redis.call('EXPIRE', rec, ttl)
      end
      if idem ~= '' then
        mark_done(idem, entry, ARGV[x+1], ARGV[x])
        if ttl > 0 then
          local hkey = rec .. ':history'
          redis.call('RPUSH', hkey, ARGV[x+2])
          redis.call('EXPIRE', hkey, ttl)
        end
      end
    end
  else
    local entry, id, job = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    local attempt, started, finished = ARGV[i+4], ARGV[i+5], ARGV[i+6]
    local payload, result, class, code = ARGV[i+7], ARGV[i+8], ARGV[i+9], ARGV[i+10]
    local message, upstream, reason, digest = ARGV[i+11], ARGV[i+12], ARGV[i+13], ARGV[i+14]
    local has_ckpt, ckpt, first_at = ARGV[i+15], ARGV[i+16], ARGV[i+17]
    local delay, hist = tonumber(ARGV[i+18]), ARGV[i+19]
    local idem, idem_ttl, digest_out, expiries = ARGV[i+20], ARGV[i+21], ARGV[i+22], ARGV[i+23]
    local dead_payload = ARGV[i+24]
    local n = tonumber(ARGV[i+25])
    local x = i + 26
    i = x + 2 * n
    if ack(entry) then
      local rec = prefix .. id
      local hkey = rec .. ':history'
      if kind == 'dup' then
        -- Nothing ran. A redelivery of a completed job leaves its record as it
        -- is; a second enqueue of the same key ends as a duplicate of the first.
        -- A queue that keeps no records of succeeded jobs keeps none of these.
        if ttl > 0 then
          redis.call('RPUSH', hkey, hist)
          redis.call('LTRIM', hkey, -hist_max, -1)
        end
        if reason ~= id and ttl > 0 then
          redis.call('HSET', rec, 'state', 'succeeded', 'job', job, 'duplicate_of', reason,
            'attempts', '0', 'last_at', finished)
          redis.call('EXPIRE', rec, ttl)
          redis.call('EXPIRE', hkey, ttl)
        end
      elseif kind == 'ok' and ttl == 0 then
        -- The queue keeps no record of succeeded jobs: the one this job had
        -- while it was retried goes, its idempotency key stays.
        if idem ~= '' then mark_done(idem, id, digest_out, idem_ttl) end
        redis.call('DEL', rec, hkey)
      else
        if first_at ~= '0' then redis.call('HSETNX', rec, 'first_at', first_at) end
        redis.call('HSET', rec, 'job', job, 'attempts', attempt, 'last_at', finished)
        if digest ~= '' then redis.call('HSET', rec, 'plugin', digest) end
        redis.call('RPUSH', hkey, hist)
        redis.call('LTRIM', hkey, -hist_max, -1)
        if kind == 'ok' then
          redis.call('HSET', rec, 'state', 'succeeded')
          redis.call('HDEL', rec, 'checkpoint', 'entry', 'payload', 'due_at', 'next_attempt')
          if result ~= '' then redis.call('HSET', rec, 'result', result) end
          if idem ~= '' then mark_done(idem, id, digest_out, idem_ttl) end
          redis.call('EXPIRE', rec, ttl)
          redis.call('EXPIRE', hkey, ttl)
        else
          redis.call('HSET', rec, 'payload', payload, 'last_class', class, 'last_code', code,
            'last_message', message, 'last_upstream', upstream)
          if kind == 'retry' then
            local next_attempt = tostring(tonumber(attempt) + 1)
            redis.call('HSET', rec, 'next_attempt', next_attempt, 'last_delay_ms', tostring(delay),
              'lease_expiries', expiries)
            if has_ckpt == '1' then redis.call('HSET', rec, 'checkpoint', ckpt) end
            for k = 0, n - 1 do
              redis.call('HSET', rec, 'x:' .. ARGV[x + 2*k], ARGV[x + 2*k + 1])
            end
            if delay <= 0 then
              local f = {'id', id, 'job', job, 'payload', payload, 'attempt', next_attempt,
                'first_at', first_at, 'last_delay_ms', '0', 'lease_expiries', expiries}
              if has_ckpt == '1' then f[#f+1] = 'checkpoint'; f[#f+1] = ckpt end
              for k = 0, n - 1 do
                f[#f+1] = ARGV[x + 2*k]; f[#f+1] = ARGV[x + 2*k + 1]
              end
              local e = redis.call('XADD', KEYS[1], '*', unpack(f))
              redis.call('HSET', rec, 'state', 'queued', 'entry', e)
              redis.call('HDEL', rec, 'due_at')
            else
              -- Due times come from the Redis clock, so daemons with skewed
              -- clocks still agree on when a retry is due.
              local due = now + delay
              redis.call('ZADD', KEYS[3], due, id)
              redis.call('HSET', rec, 'state', 'retrying', 'due_at', tostring(due))
              redis.call('HDEL', rec, 'entry')
              if earliest == nil or due < earliest then earliest = due end
            end
          else
            local first = redis.call('HGET', rec, 'first_at') or ''
            local f = {'id', id, 'job', job, 'queue', queue, 'reason', reason, 'class', class,
              'code', code, 'message', message, 'upstream', upstream, 'attempts', attempt,
              'first_at', first, 'last_at', finished, 'plugin', digest, 'entry', entry,
              'payload', dead_payload}
            for k = 0, n - 1 do
              local name = ARGV[x + 2*k]
              if not dead_fields[name] then
                f[#f+1] = name; f[#f+1] = ARGV[x + 2*k + 1]
              end
            end
            local d = redis.call('XADD', KEYS[2], '*', unpack(f))
            redis.call('HSET', rec, 'state', 'dead', 'dead_reason', reason, 'dead_entry', d)
            redis.call('HDEL', rec, 'entry', 'due_at', 'next_attempt')
          end
        end
      end
    end
  end
end
if applied > 0 then
  -- Entries are delivered in id order, so every entry before the oldest
  -- pending one was delivered and has been acknowledged; with nothing
  -- pending, that holds for every entry up to the group's last delivered
  -- one. Entries after it (not yet delivered, or just added as retries)
  -- are never touched.
  local minid = nil
  local p = redis.pcall('XPENDING', KEYS[1], group)
  if type(p) == 'table' and p.err == nil then
    if tonumber(p[1]) > 0 then
      minid = p[2]
    else
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
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
    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
  elseif minid then
    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minid)
  end
  acked_left = acked_left + kept - trimmed
  if minid and tonumber(p[1]) == 0 then acked_left = 0 end
  if acked_left < 0 then acked_left = 0 end
  redis.call('SET', KEYS[4], tostring(acked_left))
end
if earliest ~= nil then redis.call('PUBLISH', wake, tostring(earliest)) end
return table.concat(took)
