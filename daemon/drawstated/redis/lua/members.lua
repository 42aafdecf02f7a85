-- members: reading a lock key's operations through its index (included with `--- @include members`).
--
-- Only the read scripts of one server (or Sentinel's master) include this: they read state keys
-- they do not declare, which Cluster cannot allow while a slot migrates (storage/store.py, load).

-- The stored state of an index member, or nil. A member whose state key is gone (its TTL ended)
-- is dropped from the index, as prune.lua does; read and drop in one script, so no save can
-- bring the state back in between.
local function stored_state(index_key, state_base, member)
  local state = redis.call('GET', state_base .. member)
  if not state then
    redis.call('ZREM', index_key, member)
  end
  return state
end

-- Whether `a` sorts before `b` byte by byte (the order the daemon promises for operation ids).
-- Lua's own `<` compares with strcoll, in whatever locale redis-server was started under.
local function bytes_before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end
