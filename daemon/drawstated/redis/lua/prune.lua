-- prune: drop an index member whose state key has expired, and only then.
-- KEYS[1] index   {prefix}:ops:{<lock_key>}
-- KEYS[2] state   {prefix}:state:{<lock_key>}:<operation_id>
-- ARGV[1] operation_id
-- Returns 1 if the member was removed, else 0 (a save brought the state back meanwhile).

local index_key, state_key = KEYS[1], KEYS[2]
local operation_id = ARGV[1]

if redis.call('EXISTS', state_key) == 1 then
  return 0
end
return redis.call('ZREM', index_key, operation_id)
