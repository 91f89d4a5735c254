-- Marks dead jobs "won't retry", each atomically (layout in
-- dead_letter.lua). Outcome per job: {'ok', ''} | {'gone', ''} |
-- {'refused', why}; XDEL == 1 is the guard, as in REQUEUE.
local now = now_ms()

local function discard(l)
  local _, d, reply = find_dead_letter(l)
  if reply then return reply end
  if redis.call('XDEL', KEYS[1], l.dead) ~= 1 then return {'gone', ''} end
  redis.call('HSETNX', l.rec, 'job', d['job'] or '')
  redis.call('HSET', l.rec, 'state', 'discarded', 'discarded_by', ARGV[1],
    'discarded_at', tostring(now), 'discard_note', ARGV[2])
  redis.call('HDEL', l.rec, 'dead_entry', 'entry', 'due_at', 'next_attempt', 'checkpoint')
  record_event(l, {event='discarded', by=ARGV[1], at=now, dead_entry=l.dead})
  redis.call('EXPIRE', l.rec, tonumber(ARGV[4]))
  redis.call('EXPIRE', l.hist, tonumber(ARGV[4]))
  return {'ok', ''}
end

return each_dead_letter(discard)
