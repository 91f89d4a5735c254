-- Puts one dead job back as a fresh job, atomically.
-- KEYS[1..3] and ARGV as in dead_letter.lua; KEYS[4] jobs stream.
-- Returns {'ok', new entry id} | {'gone', ''} | {'refused', why}.
-- The XDEL of the dead entry is the guard: only the call that removes it
-- (XDEL returns 1) requeues, so two operators requeuing the same dead
-- letter at once run the job once. The job restarts at attempt 1 with its
-- budget reset and the ORIGINAL payload from the record (the dead entry's
-- may be redacted); correlation fields come from the dead entry.
local now = now_ms()
local df, _, reply = find_dead_letter()
if reply then return reply end
local job = redis.call('HGET', KEYS[2], 'job')
if not job then
  return {'refused', 'the job record ' .. KEYS[2] .. ' is gone, and the original payload with it; enqueue the job anew'}
end
if job == '' then
  return {'refused', 'it is a malformed entry that names no job type; discard it, or enqueue a corrected job'}
end
if redis.call('XDEL', KEYS[1], ARGV[1]) ~= 1 then return {'gone', ''} end
local f = {ENTRY.id, ARGV[2], 'job', job, 'payload', redis.call('HGET', KEYS[2], 'payload') or '',
  ENTRY.attempt, '1'}
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
local e = redis.call('XADD', KEYS[4], '*', unpack(f))
redis.call('HDEL', KEYS[2], 'first_at', 'last_at', 'last_class', 'last_code', 'last_message',
  'last_upstream', 'dead_reason', 'dead_entry', 'checkpoint', 'next_attempt', 'last_delay_ms',
  'due_at', 'result')
redis.call('HSET', KEYS[2], 'state', 'queued', 'attempts', '0', 'entry', e)
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
record_event({event='requeued', by=ARGV[3], at=now, dead_entry=ARGV[1], entry=e})
return {'ok', e}
