-- Shared by REQUEUE and DISCARD, which act on a chunk of dead letters in
-- one call (a chunk is small, so one call stays short however many dead
-- letters a bulk action covers) and take the same layout:
-- KEYS[1] dead stream, KEYS[2] jobs stream (REQUEUE adds to it, DISCARD
-- does not touch it), then per dead letter i (from 0) KEYS[3+2i] its job
-- record and KEYS[4+2i] its history;
-- ARGV[1] by, [2] note ('' for none), [3] history length, [4] record ttl
-- in s (DISCARD), then per dead letter ARGV[5+4i] dead entry id, [6+4i]
-- job id, [7+4i] a new payload and [8+4i] the edit as JSON (REQUEUE; ''
-- for none: the job keeps its payload).
-- Returns each dead letter's outcome in order, flat: {status, detail, ...},
-- a status being 'ok', 'gone' or 'refused'.

-- The dead letter's fields (flat, and by name), or the outcome that ends
-- its turn: {'gone', ''} when it is no longer there, {'refused', why} when
-- it is another job's.
local function find_dead_letter(l)
  local found = redis.call('XRANGE', KEYS[1], l.dead, l.dead)
  if #found == 0 then return nil, nil, {'gone', ''} end
  local df = found[1][2]
  local d = {}
  for k = 1, #df, 2 do d[df[k]] = df[k+1] end
  if d['id'] ~= l.id then
    return nil, nil, {'refused', 'dead letter ' .. l.dead .. ' is of job ' .. tostring(d['id'])
      .. ', not ' .. l.id}
  end
  return df, d, nil
end

-- Appends the operator's action `ev` (with their note) to the history.
local function record_event(l, ev)
  if ARGV[2] ~= '' then ev['note'] = ARGV[2] end
  redis.call('RPUSH', l.hist, cjson.encode(ev))
  redis.call('LTRIM', l.hist, -tonumber(ARGV[3]), -1)
end

-- Runs `act` on each dead letter of the call; collects the outcomes.
local function each_dead_letter(act)
  local out = {}
  for i = 0, (#KEYS - 2) / 2 - 1 do
    local a = 5 + 4 * i
    local l = {dead = ARGV[a], id = ARGV[a + 1], payload = ARGV[a + 2], edit = ARGV[a + 3],
      rec = KEYS[3 + 2 * i], hist = KEYS[4 + 2 * i]}
    local r = act(l)
    out[#out + 1] = r[1]
    out[#out + 1] = r[2]
  end
  return out
end
