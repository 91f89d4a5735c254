-- APPLY's helper that enqueues a success's follow-on jobs (the next stage of
-- a job type with `then`, a plugin's children; see daemon/src/follow_on.rs).
-- Called right after the success's acknowledgement took effect, so the jobs
-- are added once per recorded success: a retried or redelivered job's
-- earlier attempts never reached here, and a re-sent batch is not pending
-- any more. Each follow-on comes with an idempotency key (its own, or
-- `<parent id>/<index>`): one whose key is taken is already enqueued and is
-- skipped, so even a job that succeeds twice does not duplicate them.
--
-- Each is written as `ward_enqueue` writes a job (job, payload,
-- idempotency_key with ENTRY.key_claimed, batch with ENTRY.batch, counted
-- in the batch's ledger now), with the parent's correlation fields (not
-- its batch, priority or idempotency key) and `parent`, the parent's id. The keys it touches (the idempotency key,
-- the ledger) are derived from the queue's prefix `q`: they share the
-- queue's hash tag, so they live on the same node.
--
-- `at`: the ARGV position the first follow-on's fields follow; `m`: how
-- many; `x`: the parent's correlation fields as a name/value list;
-- `key_ttl`: ms.
local FOLLOW_NOT_CARRIED = {batch = true, parent = true, priority = true, idempotency_key = true}
local function follow_ons(q, stream, unfinished, parent, x, at, m, key_ttl, now)
  for k = 0, m - 1 do
    local b = at + FOLLOW_N * k
    local key, batch = ARGV[b + FOLLOW_key], ARGV[b + FOLLOW_batch]
    local ikey = q .. IDEM_PREFIX .. key
    if redis.call('EXISTS', ikey) == 0 then
      local f = {'job', ARGV[b + FOLLOW_job], 'payload', ARGV[b + FOLLOW_payload],
        'idempotency_key', key, ENTRY.key_claimed, '1', 'parent', parent}
      if batch ~= '' then
        f[#f+1] = 'batch'; f[#f+1] = batch; f[#f+1] = ENTRY.batch; f[#f+1] = batch
      end
      for j = 1, #x, 2 do
        if not FOLLOW_NOT_CARRIED[x[j]] then f[#f+1] = x[j]; f[#f+1] = x[j+1] end
      end
      local id = redis.call('XADD', stream, '*', unpack(f))
      redis.call('SET', ikey, id, 'PX', key_ttl)
      if batch ~= '' then
        batch_join(batch_keys(q, batch), q .. BATCHES_KEY, unfinished, batch, now, true)
      end
    end
  end
end
