-- Leases up to a batch of deliveries across the priority levels, in one
-- step. KEYS[1] jobs stream (normal), [2] jobs:high, [3] jobs:low.
-- ARGV[1] group, [2] consumer, [3] the order to read the levels in (e.g.
-- 'hnl', 'lhn'), [4] most deliveries, [5] most entries moved per call,
-- then pairs of (job type, idempotency TTL in ms): the job types this
-- daemon runs, whose keys it claims here.
-- PRIORITY_FIELD and KEY_FIELD (the producer's `priority` and
-- `idempotency_key` fields) come with the prelude.
--
-- Every job enters through the normal stream. A new entry of it that names
-- another level (`priority high|low`) is moved to that level's stream as it
-- is read, keeping its entry id (the level streams receive only moves, made
-- in the order the group delivers the normal stream, so ids only grow; and
-- moved entries are deleted from the normal stream, so an entry id names
-- one entry across the three streams). The moves are not returned: they
-- are read from their level's stream on its turn, maybe by this very call.
--
-- The idempotency key of each leased entry of a listed job type is claimed
-- for its job here, as check_keys.lua does for a delivery taken over from
-- another consumer: one round trip for the read and the claims.
--
-- Returns {more, entries, checks} where more is 1 when the move budget ran
-- out (read again at once), entries the leased {id, fields} pairs and
-- checks, when any entry had a key claimed, one answer per entry ('' for
-- none; else as check_keys.lua answers); when nothing was leased or moved,
-- also the group's last-delivered id of each stream, so the caller can
-- wait for anything newer (XREAD BLOCK).
-- A move whose record exists (a retry) updates its `entry`; that key is
-- built from the stream's name inside the script (same hash tag).
local main, high, low = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, order = ARGV[1], ARGV[2], ARGV[3]
local want, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local stream_of = {h = high, n = main, l = low}
local got, moved = {}, 0

-- The normal stream's group missing is an error the caller acts on (it
-- creates the group again); a level stream may not exist yet.
local function read(stream, n)
  local r
  if stream == main then
    r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', stream, '>')
  else
    r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', stream, '>')
  end
  if type(r) ~= 'table' or r.err or r[1] == nil then return {} end
  return r[1][2]
end

local ttls = {}
for k = 6, #ARGV, 2 do ttls[ARGV[k]] = ARGV[k + 1] end

-- One pass over an entry's fields: what this script needs of them.
local function scan(f)
  local s = {}
  for k = 1, #f, 2 do
    local name = f[k]
    if name == 'job' then s.job = f[k + 1]
    elseif name == KEY_FIELD then s.key = f[k + 1]
    elseif name == PRIORITY_FIELD then s.level = f[k + 1]
    elseif name == 'batch' then s.batch = f[k + 1]
    elseif name == ENTRY.id then s.id = f[k + 1]; s.counted = true
    elseif name == ENTRY.batch then s.counted = true
    end
  end
  return s
end

local function level_of(s)
  if s.level == 'high' then return high end
  if s.level == 'low' then return low end
  return nil
end

local function move(e, dest)
  local id, f = e[1], e[2]
  if redis.call('EXISTS', dest) == 0 then
    redis.call('XGROUP', 'CREATE', dest, group, '0', 'MKSTREAM')
  end
  local r = redis.pcall('XADD', dest, id, unpack(f))
  if type(r) == 'table' and r.err then
    -- Someone wrote to the level stream directly, past this id: the entry
    -- gets a new id there, and names its job id itself.
    local job_id = nil
    for k = 1, #f, 2 do if f[k] == ENTRY.id then job_id = f[k + 1] end end
    if job_id == nil then
      job_id = id
      f[#f + 1] = ENTRY.id; f[#f + 1] = id
    end
    local e2 = redis.call('XADD', dest, '*', unpack(f))
    local rec = string.sub(main, 1, -#JOBS_KEY - 1) .. RECORD_PREFIX .. job_id
    if redis.call('EXISTS', rec) == 1 then redis.call('HSET', rec, 'entry', e2) end
  end
  redis.call('XACK', main, group, id)
  redis.call('XDEL', main, id)
  moved = moved + 1
end

-- A producer's entry naming a batch (a `batch` field, written by a plain
-- XADD) joins that batch's ledger as it is first read: nothing could count
-- it when it was added. Entries Ward wrote (ENTRY.id: a retry, a promoted
-- or requeued job) and ward_enqueue's (ENTRY.batch) were counted already.
-- The ledger keys are built here from the stream's name (same hash tag).
local q = string.sub(main, 1, -#JOBS_KEY - 1)
local now = nil
local function join_batch(s)
  local b = s.batch
  if b == nil or b == '' or s.counted then return end
  now = now or now_ms()
  batch_join(batch_keys(q, b), q .. BATCHES_KEY, q .. BATCHES_UNFINISHED_KEY, b, now)
end

-- Claims the key of a leased entry for its job, or says why it must not
-- run (check_keys.lua's answers); '' when there is nothing to claim.
local checks, claimed = {}, false
local function claim(e, s)
  s = s or scan(e[2])
  local ttl = s.key and s.key ~= '' and s.job and ttls[s.job]
  if not ttl then checks[#checks + 1] = ''; return end
  claimed = true
  local id = s.id or e[1]
  local v = redis.call('SET', q .. IDEM_PREFIX .. s.key, id, 'NX', 'PX', ttl, 'GET')
  if not v then checks[#checks + 1] = 'run'; return end
  local owner, state = string.match(v, '^(%S+)%s*(%S*)')
  if owner ~= id then
    checks[#checks + 1] = 'dup ' .. owner
  elseif state == 'done' then
    checks[#checks + 1] = 'done'
  else
    checks[#checks + 1] = 'run'
  end
end

local function take(e, s)
  got[#got + 1] = e
  claim(e, s)
end

-- The normal stream: keeps its own entries, moves the others.
local function from_main()
  while #got < want and moved < budget do
    local es = read(main, want - #got)
    if #es == 0 then return end
    for _, e in ipairs(es) do
      local s = scan(e[2])
      join_batch(s)
      local dest = level_of(s)
      if dest then move(e, dest) else take(e, s) end
    end
  end
end

for c in string.gmatch(order, '.') do
  if #got >= want or moved >= budget then break end
  local s = stream_of[c]
  if s == main then
    from_main()
  else
    for _, e in ipairs(read(s, want - #got)) do take(e) end
  end
end

local more = 0
if moved >= budget then more = 1 end
if not claimed then checks = {} end
if #got > 0 or moved > 0 then return {more, got, checks} end
local function last_delivered(stream)
  local gs = redis.pcall('XINFO', 'GROUPS', stream)
  if type(gs) ~= 'table' or gs.err then return '0-0' end
  for _, g in ipairs(gs) do
    local name, last = nil, nil
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] end
      if g[k] == 'last-delivered-id' then last = g[k + 1] end
    end
    if name == group and last then return last end
  end
  return '0-0'
end
return {0, got, checks, last_delivered(main), last_delivered(high), last_delivered(low)}
