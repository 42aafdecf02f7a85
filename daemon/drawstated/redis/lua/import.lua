-- import: write one state converted from the Go engine into the sidecar's layout, unless the
-- operation is already there or already ended. Run by `drawstate import-legacy` (importer.py).
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- ARGV: see the named locals below.
-- Returns "imported" | "present" (a state is stored: a save moved it on, or an earlier run) |
--         "closed" (the operation ended: it never comes back)
--
-- The three keys share the lock key's hash tag, so this is one slot on a Cluster. The state is
-- written exactly as save.lua writes a first save (version 1), so every script reads it on the
-- fast path; its logical expiry is what the engine's key had left.

local operation_id = ARGV[1]
local head = ARGV[2]                    -- canonical state JSON without version, token, expiry, closing brace
local token = ARGV[3]                   -- a fresh token: no save of a game can be mistaken for a replay of it
local ttl_ms = tonumber(ARGV[4])        -- the engine key's remaining lifetime (or the default TTL)
local grace_ms = tonumber(ARGV[5])      -- the key outlives its logical expiry this long, for the sweeper
local saved_ms = tonumber(ARGV[6])      -- the engine's last save (last_update_time), in milliseconds

if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'closed'
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'present'
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key_ttl_ms = string.format('%d', ttl_ms + grace_ms)  -- never '1e+14': PX takes integers only
redis.call('SET', KEYS[1],
  head .. ',"version":1,"_token":"' .. token .. '","_expires":' .. string.format('%d', now + ttl_ms) .. '}',
  'PX', key_ttl_ms)
-- Scored by the engine's last save (never in the future), so a newer operation the sidecar saved
-- under the same lock key stays the one a load without an id finds.
redis.call('ZADD', KEYS[2], math.min(saved_ms, now), operation_id)
if redis.call('PTTL', KEYS[2]) < tonumber(key_ttl_ms) then
  redis.call('PEXPIRE', KEYS[2], key_ttl_ms)
end
return 'imported'
