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
-- for its job here, as `Queue::check_keys` does after a plain read and for
-- a delivery taken over from another consumer.
--
-- Returns {more, entries, checks, plain} where more is 1 when the move
-- budget ran out (read again at once), entries the leased {id, fields}
-- pairs, checks, when any entry had a key claimed, one answer per entry
-- ('' for none; else as claim() in lease_entry.lua answers), and plain 1 when this
-- read needed nothing of a script but its claims (no entry moved, no
-- batch joined, both level streams empty, no batch unfinished), so the next
-- reads may be plain XREADGROUPs whose keys are claimed after the read
-- (see lease_plain.rs); when nothing was leased or moved,
-- also the group's last-delivered id of each stream, so the caller can
-- wait for anything newer (XREAD BLOCK).
-- A move whose record exists (a retry) updates its `entry`; that key is
-- built from the stream's name inside the script (same hash tag).
local consumer, order = ARGV[2], ARGV[3]
local want, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttls = key_ttls(6, #ARGV)
local stream_of = {h = high, n = main, l = low}
local got = {}

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

local checks, claimed, joined = {}, false, false
local function take(e, s)
  got[#got + 1] = e
  local answer = claim(ttls, e, s or scan(e[2]))
  if answer ~= '' then claimed = true end
  checks[#checks + 1] = answer
end

-- The normal stream: keeps its own entries, moves the others.
local function from_main()
  while #got < want and moved < budget do
    local es = read(main, want - #got)
    if #es == 0 then return end
    for _, e in ipairs(es) do
      local s = scan(e[2])
      if join_batch(s, e[1]) then joined = true end
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
-- The level streams hold only what is still to run (moved entries are
-- deleted as they are acknowledged), so empty ones have nothing to read.
local plain = 0
-- While a batch is unfinished its members' reads stay here, where their
-- read and their joining are one step.
if not joined and moved == 0
  and redis.call('XLEN', high) == 0 and redis.call('XLEN', low) == 0
  and redis.call('ZCARD', q .. BATCHES_UNFINISHED_KEY) == 0 then
  plain = 1
end
if #got > 0 or moved > 0 then return {more, got, checks, plain} end
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
return {0, got, checks, plain, last_delivered(main), last_delivered(high), last_delivered(low)}
