-- settle: decide, once, who pays a rollback's refund; then record the outcome.
-- KEYS[1] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[2] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- KEYS[3] stream  {prefix}:audit (only where it shares this node: not on Cluster)
-- ARGV: see the named locals below.
-- Returns {final, published} | {"gone"}
--
-- The daemon runs this after close.lua removed the state, and answers its caller "final: true"
-- only if this returns final "1". A pending "p" becomes the daemon's decision: "1" (the caller
-- pays), or "0" (the stream pays: the removed state could not be read, so the caller cannot
-- compute a refund). A decided one stays: a sweeper found the decision abandoned (outbox.lua)
-- and gave the refund to the outcome stream first.

--- @include outcome

local token = ARGV[1]
local decision = ARGV[2]        -- "1" | "0"
local tomb_ttl_ms = tonumber(ARGV[3])

local tomb, marker, stream = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', tomb, 'token') ~= token then
  return {'gone'}
end
local final = redis.call('HGET', tomb, 'final')
if final == 'p' then
  redis.call('HSET', tomb, 'final', decision)
  final = decision
end
return {final, publish(tomb, marker, stream, tomb_ttl_ms)}
