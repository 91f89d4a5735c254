-- Marks one dead job "won't retry", atomically.
-- KEYS[1] dead stream, KEYS[2] job record, KEYS[3] its history
-- ARGV[1] dead entry id, [2] job id, [3] by, [4] note ('' for none),
-- [5] history length, [6] record ttl (s)
-- Returns {'ok', ''} | {'gone', ''} | {'refused', why}; XDEL == 1 is the
-- guard, as in REQUEUE.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {'gone', ''} end
local df = found[1][2]
local d = {}
for k = 1, #df, 2 do d[df[k]] = df[k+1] end
if d['id'] ~= ARGV[2] then
  return {'refused', 'dead letter ' .. ARGV[1] .. ' is of job ' .. tostring(d['id']) .. ', not ' .. ARGV[2]}
end
if redis.call('XDEL', KEYS[1], ARGV[1]) ~= 1 then return {'gone', ''} end
redis.call('HSETNX', KEYS[2], 'job', d['job'] or '')
redis.call('HSET', KEYS[2], 'state', 'discarded', 'discarded_by', ARGV[3],
  'discarded_at', tostring(now), 'discard_note', ARGV[4])
redis.call('HDEL', KEYS[2], 'dead_entry', 'entry', 'due_at', 'next_attempt', 'checkpoint')
local ev = {event='discarded', by=ARGV[3], at=now, dead_entry=ARGV[1]}
if ARGV[4] ~= '' then ev['note'] = ARGV[4] end
redis.call('RPUSH', KEYS[3], cjson.encode(ev))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
return {'ok', ''}
