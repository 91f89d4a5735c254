-- Ends a pause whose `until_ms` has passed (a daemon does it): KEYS[1] the
-- paused hash, ARGV[1] the field (`*` or a job type), ARGV[2] the
-- `until_ms` the daemon saw. Removes the field only if it still holds that
-- pause and its time is up by the Redis clock, so of several daemons only
-- one ends it, and a pause set anew meanwhile stays. Returns 1 if removed.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local ok, p = pcall(cjson.decode, v)
if not ok or type(p) ~= 'table' then return 0 end
local until_ms = tonumber(p['until_ms'])
if until_ms == nil or until_ms ~= tonumber(ARGV[2]) or until_ms > now_ms() then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
