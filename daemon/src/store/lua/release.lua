-- Releases held jobs after a resume: of the jobs held in KEYS[1] (the held
-- set), looks at up to ARGV[4] from position ARGV[3] (oldest first), and
-- moves each whose job type is ARGV[2] ('*': any; BATCH_PAUSE_PREFIX .. id:
-- the members of that batch) and is no longer paused (nor its batch)
-- (KEYS[3], the paused hash) back to the stream KEYS[2], as the attempt it
-- was held at. ARGV[1] is the record prefix, ARGV[5] the history length.
-- The ZREM and the XADD of a job happen in one script, so two releasers at
-- once (an operator's resume and a daemon's) never deliver a job twice.
-- The job records and histories (ARGV[1] .. id) are not in KEYS: their ids
-- are learnt from the held set inside the script, so the caller cannot name
-- them; they share the queue's hash tag, so they live on the same node.
-- Returns {released, skipped (still held, before the next position),
-- scanned, dropped (no record, or a record no longer `paused`)}.
local now = now_ms()
local held, jobs, paused = KEYS[1], KEYS[2], KEYS[3]
if pause_in_force(paused, '*', now) then return {0, 0, 0, 0} end
local prefix, target = ARGV[1], ARGV[2]
local from, limit, hist_max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZRANGE', held, from, from + limit - 1)
local released, skipped, dropped = 0, 0, 0
local still = {}
for _, id in ipairs(ids) do
  local rec = prefix .. id
  local kind = redis.call('HMGET', rec, 'job', 'state', EXTRA_PREFIX .. 'batch')
  local job, state, batch = kind[1], kind[2], kind[3] or ''
  if not job or state ~= 'paused' then
    -- Cancelled or removed meanwhile: nothing to put back.
    redis.call('ZREM', held, id)
    dropped = dropped + 1
  else
    -- Cached per job type and batch: a chunk is mostly one or two.
    local k = job .. ' ' .. batch
    if still[k] == nil then still[k] = held_back(paused, job, now, batch) end
    local wanted = target == '*' or job == target or (batch ~= '' and target == BATCH_PAUSE_PREFIX .. batch)
    if still[k] or not wanted then
      skipped = skipped + 1
    else
      redis.call('ZREM', held, id)
      local e = redis.call('XADD', jobs, '*', unpack(record_entry(id, redis.call('HGETALL', rec))))
      redis.call('HSET', rec, 'state', 'queued', 'entry', e)
      redis.call('HDEL', rec, 'paused_at')
      local hkey = rec .. HISTORY_SUFFIX
      redis.call('RPUSH', hkey, cjson.encode({event = 'released', at = now, entry = e}))
      redis.call('LTRIM', hkey, -hist_max, -1)
      released = released + 1
    end
  end
end
return {released, skipped, #ids, dropped}
