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
-- with `q` ('ward:{Q}:'). (The index of batches is q .. BATCHES_KEY, the
-- set of unfinished ones q .. BATCHES_UNFINISHED_KEY.)
local function batch_keys(q, b)
  local ledger = q .. BATCH_PREFIX .. b
  return ledger, ledger .. FAILED_SUFFIX, ledger .. JOINED_SUFFIX
end

-- A new member joins `ledger` (batch `b`, index key `index`). A ledger
-- that does not exist is created open (a plain XADD named a batch nobody
-- created: the job runs anyway, so it is counted rather than lost from
-- view); a member that joins a sealed batch is counted in `late` as well,
-- unless it is a follow-on (`follow`: a next stage or a child, enqueued by
-- a member's success; a sealed batch still grows by its members' work).
local function batch_join(ledger, index, unfinished, b, now, follow)
  local state = redis.call('HGET', ledger, 'state')
  if not state then
    redis.call('HSET', ledger, 'id', b, 'state', 'open', 'created_at', tostring(now),
      'implicit', '1', 'total', '0', 'pending', '0', 'succeeded', '0', 'dead', '0',
      'cancelled', '0')
    redis.call('ZADD', index, 'NX', now, b)
    redis.call('ZADD', unfinished, 'NX', now, b)
  elseif state == 'sealed' and not follow then
    redis.call('HINCRBY', ledger, 'late', 1)
  end
  redis.call('HINCRBY', ledger, 'total', 1)
  redis.call('HINCRBY', ledger, 'pending', 1)
end

-- Enqueues batch `b`'s callback job `job` for `event` ('complete' or
-- 'success') into `stream`, with the batch's summary as its payload;
-- records its id in the ledger as `on_<event>_job`.
local function batch_callback(ledger, stream, event, job, now)
  local h = redis.call('HGETALL', ledger)
  local l = {}
  for k = 1, #h, 2 do l[h[k]] = h[k + 1] end
  local summary = {batch = l['id'], event = event, at = now}
  for _, n in ipairs({'total', 'succeeded', 'dead', 'cancelled', 'late', 'created_at',
      'sealed_at', 'finished_at'}) do
    summary[n] = tonumber(l[n] or '0')
  end
  local id = redis.call('XADD', stream, '*', 'job', job, 'payload', cjson.encode(summary),
    'callback_of', l['id'] or '', 'callback', event)
  redis.call('HSET', ledger, 'on_' .. event .. '_job', id)
end

-- Whether the sealed batch `ledger` has settled: the first time nothing is
-- pending it is finished (`finished_at`, and its `on_complete` job is
-- enqueued); the first time every member has succeeded (maybe later, after
-- dead members were requeued) `succeeded_at` is set and its `on_success`
-- job enqueued. Each guard is an HSETNX in the same script as the outcome
-- that settles the batch, so a callback is enqueued exactly once.
local function batch_settle(ledger, stream, unfinished, now)
  local v = redis.call('HMGET', ledger, 'state', 'pending', 'total', 'succeeded',
    'on_complete', 'on_success', 'id')
  if v[1] ~= 'sealed' or tonumber(v[2] or '0') > 0 then return end
  if redis.call('HSETNX', ledger, 'finished_at', tostring(now)) == 1 then
    redis.call('ZREM', unfinished, v[7] or '')
    if v[5] and v[5] ~= '' then batch_callback(ledger, stream, 'complete', v[5], now) end
  end
  if tonumber(v[4] or '0') == tonumber(v[3] or '0')
    and redis.call('HSETNX', ledger, 'succeeded_at', tostring(now)) == 1 and v[6] and v[6] ~= '' then
    batch_callback(ledger, stream, 'success', v[6], now)
  end
end

-- A member of `ledger` ended: `outcome` is succeeded, dead or cancelled.
-- A dead member is kept in `failed` with `failure` (JSON). A ledger that
-- is gone (deleted by hand) is not made up again. `stream` is the queue's
-- jobs stream, where a callback is enqueued if this settles the batch, and
-- `unfinished` its set of unfinished batches.
local function batch_end(ledger, failed, outcome, id, failure, now, stream, unfinished)
  -- No ledger (removed, or never made), or a key of another type under its
  -- name: nothing to count, and the member's own outcome is recorded.
  local t = redis.call('TYPE', ledger)
  if (t.ok or t) ~= 'hash' then return end
  redis.call('HINCRBY', ledger, 'pending', -1)
  redis.call('HINCRBY', ledger, outcome, 1)
  if outcome == 'dead' then redis.call('HSET', failed, id, failure) end
  batch_settle(ledger, stream, unfinished, now)
end

-- A dead member `id` was requeued: back to pending. Its entry in `failed`
-- is the proof it was counted dead, so a repeat changes nothing.
local function batch_requeued(ledger, failed, id)
  if redis.call('HDEL', failed, id) == 1 and redis.call('EXISTS', ledger) == 1 then
    redis.call('HINCRBY', ledger, 'dead', -1)
    redis.call('HINCRBY', ledger, 'pending', 1)
  end
end
