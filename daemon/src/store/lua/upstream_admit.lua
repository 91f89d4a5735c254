-- Admits a batch of attempts to the upstreams they call: each job takes a
-- token of every rate-limited upstream and a slot of every capped one, all
-- or nothing; one call per triage batch, not per job.
--
-- KEYS: per upstream k (from 1): KEYS[2k-1] its hash (`tokens`, `ts`,
-- `promised`, `held_until`), KEYS[2k] its slot holders (member -> lease
-- expiry, ms).
-- ARGV: [1] the number of upstreams, [2] a slot's lease (ms), then per
-- upstream: tokens per ms (0: no rate), burst, concurrency (0: no cap);
-- then per job: its slot member (the delivery's entry id), the number m of
-- its upstreams, and their indexes.
-- Returns per job three integers: 0 admitted, 1 rate-limited, 2 busy,
-- 3 held (a Retry-After); the index of the upstream that refused (0 when
-- admitted); how long to wait (ms).
local n, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
-- A busy upstream's waiters come back after this long, more the longer
-- the line (see below), at most BUSY_MAX.
local BUSY_BASE, BUSY_MAX = 50, 2000
local ups = {}
for k = 1, n do
  local at = 2 + (k - 1) * 3
  local u = {key = KEYS[2 * k - 1], slots = KEYS[2 * k], rate = tonumber(ARGV[at + 1]),
    burst = tonumber(ARGV[at + 2]), cap = tonumber(ARGV[at + 3]), waiting = 0}
  local h = redis.call('HMGET', u.key, 'tokens', 'ts', 'held_until', 'promised')
  u.held = tonumber(h[3] or '0') or 0
  u.promised = tonumber(h[4] or '0') or 0
  if u.rate > 0 then
    local tokens, ts = tonumber(h[1] or ''), tonumber(h[2] or '')
    if tokens == nil or ts == nil then
      u.tokens = u.burst
    else
      u.tokens = math.min(u.burst, tokens + math.max(0, now - ts) * u.rate)
    end
  end
  if u.cap > 0 then
    -- Slots of a daemon that died come back when their lease runs out.
    redis.call('ZREMRANGEBYSCORE', u.slots, '-inf', now)
    u.used = redis.call('ZCARD', u.slots)
  end
  ups[k] = u
end
-- Why the upstream `u` cannot take a job now, and how long to wait.
local function refusal(u)
  if u.held > now then return 3, u.held - now end
  if u.cap > 0 and u.used >= u.cap then
    -- The k-th waiter in line waits about k/cap slot turnovers.
    u.waiting = u.waiting + 1
    return 2, math.min(BUSY_MAX, BUSY_BASE * (1 + math.floor(u.waiting / u.cap)))
  end
  if u.rate > 0 and u.tokens < 1 then
    -- Each refused job is promised the next token nobody was promised yet,
    -- so a line of them wakes at the rate, not all at once.
    local due = math.max(now + (1 - u.tokens) / u.rate, u.promised + 1 / u.rate)
    u.promised = due
    return 1, math.ceil(due - now)
  end
  return 0, 0
end
local out = {}
local i = 3 + 3 * n
while i <= #ARGV do
  local member, m = ARGV[i], tonumber(ARGV[i + 1])
  local code, which, wait = 0, 0, 0
  for j = 1, m do
    local k = tonumber(ARGV[i + 1 + j])
    code, wait = refusal(ups[k])
    if code ~= 0 then which = k; break end
  end
  if code == 0 then
    for j = 1, m do
      local u = ups[tonumber(ARGV[i + 1 + j])]
      if u.rate > 0 then u.tokens = u.tokens - 1 end
      if u.cap > 0 then
        u.used = u.used + 1
        redis.call('ZADD', u.slots, now + lease, member)
      end
    end
  end
  out[#out + 1] = code
  out[#out + 1] = which
  out[#out + 1] = wait
  i = i + 2 + m
end
for _, u in ipairs(ups) do
  if u.rate > 0 then
    redis.call('HSET', u.key, 'tokens', tostring(u.tokens), 'ts', now,
      'promised', tostring(u.promised))
  end
  if u.cap > 0 then redis.call('PEXPIRE', u.slots, 2 * lease) end
  -- Forgotten a day after the last use (a table removed from the config).
  redis.call('PEXPIRE', u.key, math.max(86400000, u.held - now))
end
return out
