-- KEYS[1] the schedule's state hash; ARGV[1] fire time (Unix ms), ARGV[2]
-- the job it enqueued. Several daemons fire the same times, and a late one
-- must not move `last_fire_ms` back: only a later fire is kept.
local last = tonumber(redis.call('HGET', KEYS[1], 'last_fire_ms') or '0')
local fire = tonumber(ARGV[1])
if fire > last then
  redis.call('HSET', KEYS[1], 'last_fire_ms', ARGV[1], 'last_job', ARGV[2])
  return 1
end
return 0
