-- load: one operation's state, or the newest live operation of a lock key.
-- KEYS[1] index   {prefix}:ops:{<lock_key>}
-- KEYS[2] state   {prefix}:state:{<lock_key>}:<operation_id>   (only when an id is given)
-- ARGV[1] base    {prefix}:state:{<lock_key>}:   (state key minus the operation id)
-- Returns {operation_id, json} or nil.
--
-- Without an id the script reads state keys it builds from index members, keys
-- not declared in KEYS. That is safe on Redis Cluster only because every one of
-- them carries the same {<lock_key>} hash tag as KEYS[1], so they live in the
-- index's slot, on the node running this script.

if KEYS[2] then
  local raw = redis.call('GET', KEYS[2])
  if raw then
    return {'', raw}
  end
  return nil
end

local members = redis.call('ZREVRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do
  local raw = redis.call('GET', ARGV[1] .. member)
  if raw then
    return {member, raw}
  end
  -- The state expired: drop its index entry so the next load is cheaper.
  redis.call('ZREM', KEYS[1], member)
end
return nil
