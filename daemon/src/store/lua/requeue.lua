-- Puts dead jobs back as fresh jobs, each atomically (layout in
-- dead_letter.lua). Outcome per job: {'ok', new entry id} | {'gone', ''} |
-- {'refused', why}.
-- The XDEL of the dead entry is the guard: only the call that removes it
-- (XDEL returns 1) requeues, so two operators requeuing the same dead
-- letter at once, or a bulk requeue interrupted and run again, run the job
-- once. The job restarts at attempt 1 with its budget reset and the
-- ORIGINAL payload from the record (the dead entry's may be redacted), or
-- the operator's corrected one (an edit); correlation fields come from the
-- dead entry.
local now = now_ms()

local function requeue(l)
  local df, _, reply = find_dead_letter(l)
  if reply then return reply end
  local job = redis.call('HGET', l.rec, 'job')
  if not job then
    return {'refused', 'the job record ' .. l.rec .. ' is gone, and the original payload with it; enqueue the job anew'}
  end
  if job == '' then
    return {'refused', 'it is a malformed entry that names no job type; discard it, or enqueue a corrected job'}
  end
  local payload = redis.call('HGET', l.rec, 'payload') or ''
  local edit = nil
  if l.edit ~= '' then
    edit = cjson.decode(l.edit)
    -- The digest of the old payload was taken from the record before this
    -- call; a record whose payload has another size since is not the one
    -- the operator corrected.
    if #payload ~= tonumber(edit.old_payload_size) then
      return {'refused', 'its payload changed since it was read; run the command again'}
    end
    payload = l.payload
  end
  if redis.call('XDEL', KEYS[1], l.dead) ~= 1 then return {'gone', ''} end
  local f = {ENTRY.id, l.id, 'job', job, 'payload', payload, ENTRY.attempt, '1'}
  -- The correlation fields: every field that is not the dead letter's own,
  -- and under their own names again those kept aside as `x:<name>`.
  local xp = #EXTRA_PREFIX
  for k = 1, #df, 2 do
    local name = df[k]
    if string.sub(name, 1, xp) == EXTRA_PREFIX and DEAD_ENTRY_FIELDS[string.sub(name, xp + 1)] then
      name = string.sub(name, xp + 1)
    elseif DEAD_ENTRY_FIELDS[name] then
      name = nil
    end
    if name then f[#f+1] = name; f[#f+1] = df[k+1] end
  end
  local e = redis.call('XADD', KEYS[2], '*', unpack(f))
  -- A batch member goes back to pending in its batch's ledger (built from
  -- the jobs stream's name: same hash tag).
  local b = nil
  for k = 1, #f, 2 do if f[k] == 'batch' then b = f[k + 1] end end
  if b and b ~= '' then
    local ledger, failed = batch_keys(string.sub(KEYS[2], 1, -#JOBS_KEY - 1), b)
    batch_requeued(ledger, failed, l.id)
  end
  redis.call('HDEL', l.rec, 'first_at', 'last_at', 'last_class', 'last_code', 'last_message',
    'last_upstream', 'dead_reason', 'dead_entry', 'checkpoint', 'next_attempt', 'last_delay_ms',
    'due_at', 'result')
  redis.call('HSET', l.rec, 'state', 'queued', 'attempts', '0', 'entry', e)
  -- An edit replaces the payload in the record too (a later requeue runs
  -- the corrected one); the history keeps only the digests and sizes.
  if edit then redis.call('HSET', l.rec, 'payload', payload) end
  redis.call('PERSIST', l.rec)
  redis.call('PERSIST', l.hist)
  local ev = {event='requeued', by=ARGV[1], at=now, dead_entry=l.dead, entry=e}
  if edit then
    ev['edited'] = true
    for k, v in pairs(edit) do ev[k] = v end
  end
  record_event(l, ev)
  return {'ok', e}
end

return each_dead_letter(requeue)
