-- Puts one dead job back as a fresh job, atomically.
-- KEYS[1] jobs stream, KEYS[2] dead stream, KEYS[3] job record, KEYS[4] its history
-- ARGV[1] dead entry id, [2] job id, [3] by, [4] note ('' for none), [5] history length
-- Returns {'ok', new entry id} | {'gone', ''} | {'refused', why}.
-- The XDEL of the dead entry is the guard: only the call that removes it
-- (XDEL returns 1) requeues, so two operators requeuing the same dead
-- letter at once run the job once. The job restarts at attempt 1 with its
-- budget reset and the ORIGINAL payload from the record (the dead entry's
-- may be redacted); correlation fields come from the dead entry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #found == 0 then return {'gone', ''} end
local df = found[1][2]
local d = {}
for k = 1, #df, 2 do d[df[k]] = df[k+1] end
if d['id'] ~= ARGV[2] then
  return {'refused', 'dead letter ' .. ARGV[1] .. ' is of job ' .. tostring(d['id']) .. ', not ' .. ARGV[2]}
end
local job = redis.call('HGET', KEYS[3], 'job')
if not job then
  return {'refused', 'the job record ' .. KEYS[3] .. ' is gone, and the original payload with it; enqueue the job anew'}
end
if job == '' then
  return {'refused', 'it is a malformed entry that names no job type; discard it, or enqueue a corrected job'}
end
if redis.call('XDEL', KEYS[2], ARGV[1]) ~= 1 then return {'gone', ''} end
local f = {'id', ARGV[2], 'job', job, 'payload', redis.call('HGET', KEYS[3], 'payload') or '',
  'attempt', '1'}
for k = 1, #df, 2 do
  if not DEAD_ENTRY_FIELDS[df[k]] then f[#f+1] = df[k]; f[#f+1] = df[k+1] end
end
local e = redis.call('XADD', KEYS[1], '*', unpack(f))
redis.call('HDEL', KEYS[3], 'first_at', 'last_at', 'last_class', 'last_code', 'last_message',
  'last_upstream', 'dead_reason', 'dead_entry', 'checkpoint', 'next_attempt', 'last_delay_ms',
  'due_at', 'result')
redis.call('HSET', KEYS[3], 'state', 'queued', 'attempts', '0', 'entry', e)
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
local ev = {event='requeued', by=ARGV[3], at=now, dead_entry=ARGV[1], entry=e}
if ARGV[4] ~= '' then ev['note'] = ARGV[4] end
redis.call('RPUSH', KEYS[4], cjson.encode(ev))
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[5]), -1)
return {'ok', e}
