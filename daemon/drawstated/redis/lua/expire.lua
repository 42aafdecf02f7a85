-- expire: the sweeper's step for one state key: end the operation if its lifetime is over.
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[4] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- KEYS[5] stream  {prefix}:audit (only where it shares this node: not on Cluster)
-- ARGV: see the named locals below.
-- Returns {"expired", published} | {"live"} | {"gone"} | {"closed"}
--
-- Exactly one "expire" per operation, however many sweepers run: this script removes the state
-- as it writes the tombstone, so the next one finds nothing. A state this daemon wrote expires at
-- its "_expires"; one written otherwise (no "_expires") just before its key would vanish, so its
-- last state is still recorded.

--- @include outcome

local operation_id = ARGV[1]
local lock_key = ARGV[2]
local early_ms = tonumber(ARGV[3])   -- a state without "_expires" is due this long before its key expires
local tomb_ttl_ms = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])

local k = op_keys()
local now = now_ms()
local state = redis.call('GET', k.state)
if not state then
  return {'gone'}
end
if tomb_kind(k.tomb) then
  return {'closed'}  -- a closed operation's state came back: not the sweeper's to judge
end
local expires = expires_at(state)
local due
if expires then
  due = expires <= now
else
  local pttl = redis.call('PTTL', k.state)
  due = pttl >= 0 and pttl <= early_ms
end
if not due then
  return {'live'}
end
return {'expired', expire_now(k, state, lock_key, operation_id, lease_ms, tomb_ttl_ms, now)}
