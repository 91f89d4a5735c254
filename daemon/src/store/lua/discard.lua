-- Marks one dead job "won't retry", atomically.
-- KEYS and ARGV[1..5] as in dead_letter.lua; ARGV[6] record ttl (s).
-- Returns {'ok', ''} | {'gone', ''} | {'refused', why}; XDEL == 1 is the
-- guard, as in REQUEUE.
local now = now_ms()
local _, d, reply = find_dead_letter()
if reply then return reply end
if redis.call('XDEL', KEYS[1], ARGV[1]) ~= 1 then return {'gone', ''} end
redis.call('HSETNX', KEYS[2], 'job', d['job'] or '')
redis.call('HSET', KEYS[2], 'state', 'discarded', 'discarded_by', ARGV[3],
  'discarded_at', tostring(now), 'discard_note', ARGV[4])
redis.call('HDEL', KEYS[2], 'dead_entry', 'entry', 'due_at', 'next_attempt', 'checkpoint')
record_event({event='discarded', by=ARGV[3], at=now, dead_entry=ARGV[1]})
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
return {'ok', ''}
