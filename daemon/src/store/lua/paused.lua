-- Shared by APPLY and RELEASE: whether `field` of the paused hash `paused`
-- (`*` for the whole queue, else a job type) holds jobs back at `now`: it
-- is there, and its `until_ms` (if any) has not passed. A value that is not
-- readable JSON still counts as a pause: holding a job is the safe side.
local function pause_in_force(paused, field, now)
  local v = redis.call('HGET', paused, field)
  if not v then return false end
  local ok, p = pcall(cjson.decode, v)
  local until_ms = ok and type(p) == 'table' and tonumber(p['until_ms']) or nil
  return until_ms == nil or until_ms > now
end

-- Whether jobs of type `job` in batch `batch` (nil or '': none) are held
-- back at `now`: the whole queue, the job type or the batch is paused.
local function held_back(paused, job, now, batch)
  return pause_in_force(paused, '*', now) or pause_in_force(paused, job, now)
    or (batch ~= nil and batch ~= '' and pause_in_force(paused, BATCH_PAUSE_PREFIX .. batch, now))
end
