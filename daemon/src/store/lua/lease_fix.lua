-- Finishes the taking of entries a plain XREADGROUP of the normal stream
-- leased (see levels.rs) that need more than a read: an entry naming
-- another level is moved to its stream, a plain-XADD batch member joins its
-- ledger, a keyed entry's key is claimed; what lease.lua does as it reads.
-- KEYS as lease.lua; ARGV[1] group, [2] n, then n pairs of (job type, key
-- TTL in ms), then the entry ids.
-- Returns one answer per id: 'moved' (to its level's stream: it is read
-- from there, not run now), 'gone' (no longer in the stream: not to run),
-- else what claim() answers ('' for no key). Safe to call again for the
-- same ids when a call's answer was lost or it failed: a moved entry is
-- then gone, a claimed key is the job's own, a batch joined is not counted
-- twice.
local n = tonumber(ARGV[2])
local ttls = key_ttls(3, 2 + 2 * n)
local out = {}
for k = 3 + 2 * n, #ARGV do
  local e = redis.call('XRANGE', main, ARGV[k], ARGV[k])[1]
  if e == nil then
    -- Moved by an earlier call for this read, or deleted by hand: there
    -- is nothing to run (the copy of a moved entry is read from its level).
    out[#out + 1] = 'gone'
  else
    local s = scan(e[2])
    join_batch(s, e[1])
    local dest = level_of(s)
    if dest then
      move(e, dest)
      out[#out + 1] = 'moved'
    else
      out[#out + 1] = claim(ttls, e, s)
    end
  end
end
return out
