-- Gives back idempotency keys claimed for first deliveries dead-lettered
-- without running for what they are (not a job at all, or a payload over
-- the queue's limit). The lease claims a keyed entry's key as it reads it,
-- before the daemon checks the entry; a key left with an entry that never
-- ran would make the producer's corrected resend a duplicate of it.
-- KEYS the keys; ARGV[i] the entry id KEYS[i] was claimed for. A key is
-- deleted only while it holds exactly that id: unclaimed (a plain read
-- claims after those checks, so never for such an entry), another job's,
-- or marked done, it is left alone. Returns how many were given back.
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
