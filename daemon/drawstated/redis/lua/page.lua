-- page: one lock key's operations after a cursor, by operation id, with their states (one server,
-- not Cluster).
-- KEYS[1] index   {prefix}:ops:{<lock_key>}
-- ARGV: see the named locals below.
-- Returns {following, operation_id, state, operation_id, state, ...}
--   following: "" when no member after the last one looked at remains; else the last one looked
--   at, to pass back as `after` (an operation id is never "")
--
-- Operation ids in byte order, at most `limit` states; members whose state key is gone are
-- dropped on the way and count towards `most`, which bounds one call's work. Whether a state is
-- past its lifetime, or its rollback is deferred in the daemon, is the daemon's to judge.

--- @include members

local index_key = KEYS[1]
local state_base = ARGV[1]      -- {prefix}:state:{<lock_key>}: — a member's state key is this .. member
local after = ARGV[2]           -- only ids after this one ("" from the first)
local limit = tonumber(ARGV[3]) -- the most states returned
local most = tonumber(ARGV[4])  -- the most index members looked at in this call

-- The `want` first members after `cursor` in byte order, sorted; and whether any other follows.
-- One pass and an insertion into at most `want` (not a sort of the whole index).
local function first_after(members, cursor, want)
  local chosen = {}
  local beyond = false
  for _, member in ipairs(members) do
    if cursor == '' or bytes_before(cursor, member) then
      if #chosen == want and not bytes_before(member, chosen[want]) then
        beyond = true
      else
        local at = #chosen + 1
        while at > 1 and bytes_before(member, chosen[at - 1]) do
          at = at - 1
        end
        table.insert(chosen, at, member)
        if #chosen > want then
          chosen[#chosen] = nil
          beyond = true
        end
      end
    end
  end
  return chosen, beyond
end

local members = redis.call('ZRANGE', index_key, 0, -1)
local taken = {''}
local found, looked, last = 0, 0, after
while true do
  local chosen, beyond = first_after(members, last, math.min(limit - found, most - looked))
  for _, member in ipairs(chosen) do
    local state = stored_state(index_key, state_base, member)
    if state then
      taken[#taken + 1] = member
      taken[#taken + 1] = state
      found = found + 1
    end
    looked = looked + 1
    last = member
  end
  if not beyond then
    return taken
  end
  if found == limit or looked == most then
    taken[1] = last
    return taken
  end
end
