-- The batch ledger, shared by every script that changes a member's state
-- (ward_enqueue, LEASE, APPLY, REQUEUE, CANCEL). A batch's ledger is the
-- hash ward:{Q}:batch:<id> (see store/batches.rs for its fields), its dead
-- members the hash ward:{Q}:batch:<id>:failed (job id -> JSON), and the
-- queue's index ward:{Q}:batches (id -> created ms). A member is counted
-- once when it joins (total and pending), and moved once from pending to
-- succeeded, dead or cancelled when it ends; a requeue moves a dead one
-- back to pending. Each call runs inside the script that changes the job,
-- so the counts never drift from the jobs.

-- The ledger and failed keys of batch `b` of the queue whose keys start
-- with `q` ('ward:{Q}:').
local function batch_keys(q, b)
  local ledger = q .. BATCH_PREFIX .. b
  return ledger, ledger .. FAILED_SUFFIX
end

-- A new member joins `ledger` (batch `b`, index key `index`). A ledger
-- that does not exist is created open (a plain XADD named a batch nobody
-- created: the job runs anyway, so it is counted rather than lost from
-- view); a member that joins a sealed batch is counted in `late` as well.
local function batch_join(ledger, index, b, now)
  local state = redis.call('HGET', ledger, 'state')
  if not state then
    redis.call('HSET', ledger, 'id', b, 'state', 'open', 'created_at', tostring(now),
      'implicit', '1', 'total', '0', 'pending', '0', 'succeeded', '0', 'dead', '0',
      'cancelled', '0')
    redis.call('ZADD', index, 'NX', now, b)
  elseif state == 'sealed' then
    redis.call('HINCRBY', ledger, 'late', 1)
  end
  redis.call('HINCRBY', ledger, 'total', 1)
  redis.call('HINCRBY', ledger, 'pending', 1)
end

-- A member of `ledger` ended: `outcome` is succeeded, dead or cancelled.
-- A dead member is kept in `failed` with `failure` (JSON). A ledger that
-- is gone (deleted by hand) is not made up again. The batch is finished
-- the first time it is sealed with nothing pending.
local function batch_end(ledger, failed, outcome, id, failure, now)
  if redis.call('EXISTS', ledger) == 0 then return end
  local pending = redis.call('HINCRBY', ledger, 'pending', -1)
  redis.call('HINCRBY', ledger, outcome, 1)
  if outcome == 'dead' then redis.call('HSET', failed, id, failure) end
  if pending <= 0 and redis.call('HGET', ledger, 'state') == 'sealed' then
    redis.call('HSETNX', ledger, 'finished_at', tostring(now))
  end
end

-- A dead member `id` was requeued: back to pending. Its entry in `failed`
-- is the proof it was counted dead, so a repeat changes nothing.
local function batch_requeued(ledger, failed, id)
  if redis.call('HDEL', failed, id) == 1 and redis.call('EXISTS', ledger) == 1 then
    redis.call('HINCRBY', ledger, 'dead', -1)
    redis.call('HINCRBY', ledger, 'pending', 1)
  end
end
