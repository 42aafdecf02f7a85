-- published: the daemon wrote a tombstone's outcome event into the stream itself (Cluster, where
-- the stream lives on another node, or after an XADD the close script could not make); mark it.
-- KEYS[1] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[2] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- ARGV[1] tomb_ttl_ms  tombstone lifetime from now on
-- Returns 1, or 0 when the tombstone is gone.

--- @include outcome

if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
mark_published(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return 1
