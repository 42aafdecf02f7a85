-- published: the daemon wrote a tombstone's outcome event into the stream itself (Cluster, where
-- the stream lives on another node, or after an XADD the close script could not make); mark it.
-- KEYS[1] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[2] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- ARGV[1] tomb_ttl_ms  tombstone lifetime from now on
-- Returns 1, or 0 when the tombstone is gone.

--- @include outcome

local tomb_key, marker_key = KEYS[1], KEYS[2]
local tomb_ttl_ms = tonumber(ARGV[1])

if redis.call('EXISTS', tomb_key) == 0 then
  redis.call('DEL', marker_key)
  return 0
end
mark_published(tomb_key, marker_key, tomb_ttl_ms)
return 1
