-- KEYS[1] the set of upstreams with a breaker, KEYS[2] this upstream's
-- breaker hash; ARGV[1] upstream, [2] failures to add (0: a success),
-- [3] failures that open it, [4] window (ms), [5] open for (ms).
-- Returns {state, open_until_ms, opened_now (1 if this call opened it), failures}.
-- An open breaker ignores what is reported while it is open. Once its time
-- is up it is half open: one more failure opens it again at once, a success
-- closes it (forgets every failure). Successes do not touch a closed one.
local now = now_ms()
local key, upstream = KEYS[2], ARGV[1]
local add, threshold = tonumber(ARGV[2]), tonumber(ARGV[3])
local window, open_for = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', key, 'failures', 'window_until', 'open_until')
local failures, wu, ou = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
if now < ou then return {'open', ou, 0, failures} end
if add == 0 then
  -- A success closes a half-open breaker; a closed one keeps counting.
  if ou > 0 then redis.call('DEL', key) end
  return {'closed', 0, 0, failures}
end
redis.call('SADD', KEYS[1], upstream)
if ou > 0 then
  -- Half open: the first failure after an opening re-opens it.
  failures = threshold
elseif now >= wu then
  failures = add
  wu = now + window
else
  failures = failures + add
end
if failures >= threshold then
  ou = now + open_for
  redis.call('HSET', key, 'failures', threshold, 'window_until', ou, 'open_until', ou,
    'opened_at', now)
  redis.call('HINCRBY', key, 'openings', 1)
  redis.call('PEXPIRE', key, open_for + window * 2)
  return {'open', ou, 1, threshold}
end
redis.call('HSET', key, 'failures', failures, 'window_until', wu)
redis.call('PEXPIRE', key, window * 2 + open_for)
return {'closed', 0, 0, failures}
