-- close: roll back or complete an operation; remove its state, leave a tombstone.
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] closed  {prefix}:closed:{<lock_key>}:<operation_id>
-- ARGV[1] kind    "rollback" | "complete"
-- ARGV[2] ttl_ms  tombstone lifetime
-- ARGV[3] operation_id
-- Returns {"done", removed_json_or_""} | {"replay", body} | {"closed", other_kind}
--
-- The tombstone holds "<kind>\n<body>": for a rollback the removed state (so a
-- retried rollback returns the same refund), for a complete "1" if a state
-- existed. A late save meets the tombstone and is refused.

local tomb = redis.call('GET', KEYS[3])
if tomb then
  local newline = string.find(tomb, '\n', 1, true) or (#tomb + 1)
  local kind = string.sub(tomb, 1, newline - 1)
  if kind ~= ARGV[1] then
    return {'closed', kind}
  end
  return {'replay', string.sub(tomb, newline + 1)}
end

local state = redis.call('GET', KEYS[1])
if state then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[3])
local body = state or ''
if ARGV[1] == 'complete' and state then
  body = '1'
end
redis.call('SET', KEYS[3], ARGV[1] .. '\n' .. body, 'PX', ARGV[2])
return {'done', state or ''}
