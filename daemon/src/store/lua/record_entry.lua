-- Shared by PROMOTE and RELEASE: the fields of the stream entry that runs
-- job `id` again, from its record `h` (an HGETALL reply): its type,
-- payload, next attempt and bookkeeping, then its correlation fields under
-- their own names. nil when the record names no job type.
local function record_entry(id, h)
  local r = {}
  for k = 1, #h, 2 do r[h[k]] = h[k+1] end
  if r['job'] == nil then return nil end
  local f = {ENTRY.id, id, 'job', r['job'], 'payload', r['payload'] or '',
    ENTRY.attempt, r['next_attempt'] or '1'}
  for _, name in ipairs({'first_at', 'last_delay_ms', 'checkpoint', 'lease_expiries'}) do
    if r[name] then f[#f+1] = ENTRY[name]; f[#f+1] = r[name] end
  end
  local xp = #EXTRA_PREFIX
  for k = 1, #h, 2 do
    if string.sub(h[k], 1, xp) == EXTRA_PREFIX then
      f[#f+1] = string.sub(h[k], xp + 1); f[#f+1] = h[k+1]
    end
  end
  return f
end
