-- outbox: write the outcome event of an ended operation whose event is not in the stream yet.
-- KEYS[1] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[2] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- KEYS[3] stream  {prefix}:audit (only where it shares this node: not on Cluster)
-- ARGV: see the named locals below.
-- Returns {"gone"} | {"leased"} | {"published"} | {"publish", field, value, ...}
--
-- Run by the daemon that ended the operation ("owner": right after, when the close script could not
-- write the event itself) and by every daemon's sweeper ("sweeper": only once the owner's lease is
-- over, because it died or lost Redis first). A refund decision still pending ("p") when the lease
-- is over was never answered to anyone as final (the daemon answers only after settle.lua), so it
-- becomes "0": the outcome stream pays. The caller takes the lease, so others leave the marker alone
-- while it writes the event ({"publish", ...}: XADD, then published.lua).

--- @include outcome

local mode = ARGV[1]                 -- "owner" | "sweeper"
local lease_ms = tonumber(ARGV[2])
local tomb_ttl_ms = tonumber(ARGV[3])

local tomb, marker, stream = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local lease = tonumber(redis.call('GET', marker))
if lease == nil then
  return {'gone'}
end
if mode == 'sweeper' and lease > now then
  return {'leased'}
end
if redis.call('TYPE', tomb)['ok'] ~= 'hash' or redis.call('HGET', tomb, 'published') == '1' then
  redis.call('DEL', marker)
  return {'gone'}
end
if mode == 'sweeper' and redis.call('HGET', tomb, 'final') == 'p' then
  redis.call('HSET', tomb, 'final', '0')
end
if redis.call('HGET', tomb, 'final') == 'p' then
  return {'leased'}  -- the owner's caller is still waiting for settle.lua
end
redis.call('SET', marker, tostring(now + lease_ms))
if publish(tomb, marker, stream, tomb_ttl_ms) == '1' then
  return {'published'}
end
local reply = {'publish'}
for _, item in ipairs(event_fields(tomb_fields(tomb))) do
  reply[#reply + 1] = item
end
return reply
