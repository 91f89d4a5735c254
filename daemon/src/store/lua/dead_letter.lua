-- Shared by REQUEUE and DISCARD, which take the same keys and arguments
-- first: KEYS[1] dead stream, KEYS[2] job record, KEYS[3] its history;
-- ARGV[1] dead entry id, [2] job id, [3] by, [4] note ('' for none),
-- [5] history length.

-- The dead letter's fields (flat, and by name), or the reply that ends the
-- script: {'gone', ''} when it is no longer there, {'refused', why} when it
-- is another job's.
local function find_dead_letter()
  local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
  if #found == 0 then return nil, nil, {'gone', ''} end
  local df = found[1][2]
  local d = {}
  for k = 1, #df, 2 do d[df[k]] = df[k+1] end
  if d['id'] ~= ARGV[2] then
    return nil, nil, {'refused', 'dead letter ' .. ARGV[1] .. ' is of job ' .. tostring(d['id'])
      .. ', not ' .. ARGV[2]}
  end
  return df, d, nil
end

-- Appends the operator's action `ev` (with their note) to the history.
local function record_event(ev)
  if ARGV[4] ~= '' then ev['note'] = ARGV[4] end
  redis.call('RPUSH', KEYS[3], cjson.encode(ev))
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
