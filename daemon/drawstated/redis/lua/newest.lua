-- newest: the newest operation of a lock key whose state is still stored (one server, not Cluster).
-- KEYS[1] index   {prefix}:ops:{<lock_key>}
-- ARGV: see the named locals below.
-- Returns {"found", operation_id, state} | {"none"} | {"more"}
--
-- The index scores each operation by its last save (save.lua), so the newest member comes first.
-- Members whose state key is gone are dropped on the way. "more": every member looked at was
-- gone (now dropped) and the index holds others: call again. Whether the state found is past its
-- lifetime, or its rollback is deferred in the daemon, is the daemon's to judge.

--- @include members

local index_key = KEYS[1]
local state_base = ARGV[1]      -- {prefix}:state:{<lock_key>}: — a member's state key is this .. member
local most = tonumber(ARGV[2])  -- the most index members looked at in this call

local members = redis.call('ZREVRANGE', index_key, 0, most - 1)
for _, member in ipairs(members) do
  local state = stored_state(index_key, state_base, member)
  if state then
    return {'found', member, state}
  end
end
if #members < most then
  return {'none'}
end
return {'more'}
