-- What the lease scripts (lease.lua, lease_fix.lua) do with an entry as
-- they first take it: its level, its batch, its idempotency key. Both take
-- KEYS[1] jobs stream (normal), [2] jobs:high, [3] jobs:low and ARGV[1]
-- the group. PRIORITY_FIELD and KEY_FIELD (the producer's `priority` and
-- `idempotency_key` fields) come with the prelude.
local main, high, low = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]
-- 'ward:{Q}:', the start of every key of the queue: the keys an entry
-- names (its record, its batch's ledger, its idempotency key) are built
-- from it here (same hash tag).
local q = string.sub(main, 1, -#JOBS_KEY - 1)
local moved, now = 0, nil

-- The job types whose keys are claimed, with their key's TTL: the pairs
-- of (job type, TTL in ms) in ARGV[from] .. ARGV[to].
local function key_ttls(from, to)
  local t = {}
  for k = from, to, 2 do t[ARGV[k]] = ARGV[k + 1] end
  return t
end

-- One pass over an entry's fields: what the scripts need of them.
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
    elseif name == ENTRY.key_claimed then s.key_claimed = true
    end
  end
  return s
end

-- The level stream a normal-stream entry belongs in (nil: it stays).
local function level_of(s)
  if s.level == 'high' then return high end
  if s.level == 'low' then return low end
  return nil
end

-- Moves entry `e` of the normal stream to level stream `dest`, keeping
-- its id (see lease.lua).
local function move(e, dest)
  local id, f = e[1], e[2]
  if redis.call('EXISTS', dest) == 0 then
    redis.call('XGROUP', 'CREATE', dest, group, '0', 'MKSTREAM')
  end
  local r = redis.pcall('XADD', dest, id, unpack(f))
  -- Only the clash of ids is handled here; any other refusal (Redis out of
  -- memory, say) fails the script, which the caller retries.
  if type(r) == 'table' and r.err and not string.find(r.err, 'equal or smaller', 1, true) then
    error(r)
  end
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
    local rec = q .. RECORD_PREFIX .. job_id
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
-- The batch's set of joined members guards the join: a plain read and the
-- lease_fix.lua call that counts its entries are two steps, and a daemon
-- that dies around the second leaves the delivery to the one that takes it
-- over (reclaim.rs), which calls lease_fix.lua for it again. `id` is the
-- entry's id (its job id: such an entry names no other). True when it joined.
-- A batch whose keys hold something else (another application's key, a
-- damaged ledger) is not joined: the job runs uncounted, and the read that
-- took it (every job in it) is not failed for it; Redis's log says why.
local function join_batch(s, id)
  local b = s.batch
  if b == nil or b == '' or s.counted then return false end
  local ledger, _, joined = batch_keys(q, b)
  local added = redis.pcall('SADD', joined, id)
  if added == 0 then return false end
  -- A refusal other than a key of another type (Redis out of memory, say)
  -- fails the script: the job must not run uncounted for a passing cause.
  if type(added) == 'table' and added.err and string.sub(added.err, 1, 9) ~= 'WRONGTYPE' then
    error(added)
  end
  now = now or now_ms()
  local ok = type(added) == 'number' and pcall(batch_join, ledger, q .. BATCHES_KEY,
    q .. BATCHES_UNFINISHED_KEY, b, now)
  if not ok then
    redis.log(redis.LOG_WARNING, 'ward: job ' .. id .. ' names batch ' .. b
      .. ' whose keys (' .. ledger .. ', ' .. joined .. ') hold another type; it runs uncounted')
    return false
  end
  return true
end

-- Claims the key of a taken entry `e` (scanned as `s`) for its job, if its
-- job type is in `ttls`; the answer: 'run', 'dup <owner job id>' (a second
-- enqueue), 'done' (a redelivery of a job that already succeeded), 'bad
-- <Redis' words>' (the key holds another type: Ward did not write it), as
-- `KeyCheck::from_answer` reads them, or '' when there was nothing to claim.
local function claim(ttls, e, s)
  local ttl = s.key and s.key ~= '' and s.job and ttls[s.job]
  if not ttl then return '' end
  -- A first entry whose key ward_enqueue set to it as it added it (the
  -- triage runs it as it is, as fields.rs reads the mark).
  if s.key_claimed and not s.id then return '' end
  local id = s.id or e[1]
  -- pcall: a key of another type must fail this entry only (the daemon
  -- dead-letters it, naming the key), not the read and every job in it.
  -- Any other refusal (out of memory, say) fails the read, as before.
  local v = redis.pcall('SET', q .. IDEM_PREFIX .. s.key, id, 'NX', 'PX', ttl, 'GET')
  if type(v) == 'table' and v.err then
    if string.sub(v.err, 1, 9) == 'WRONGTYPE' then return 'bad ' .. v.err end
    error(v)
  end
  if not v then return 'run' end
  local owner, state = string.match(v, '^(%S+)%s*(%S*)')
  -- Not a value Ward writes (empty, say): the key is not this job's.
  if owner == nil then return 'dup ' .. v end
  if owner ~= id then return 'dup ' .. owner end
  if state == 'done' then return 'done' end
  return 'run'
end
