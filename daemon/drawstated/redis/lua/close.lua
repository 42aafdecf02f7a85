-- close: roll back or complete an operation: remove its state, leave a tombstone, record the outcome.
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[4] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- KEYS[5] stream  {prefix}:audit (only where it shares this node: not on Cluster)
-- ARGV: see the named locals below.
-- Returns {"done", final, existed, removed_state_or_"", published}
--       | {"replay", final, existed, removed_state_or_"", published}
--       | {"nothing", "0", "0", "", "1"} (a deferred rollback that found neither state nor tombstone)
--       | {"conflict", stored_version} (expect given and not the stored version: nothing changed)
--       | {"closed", kind}
--
-- A rollback names its caller with a token. Who pays the refund is decided once ("final" in the
-- tombstone, outcome.lua). A rollback whose caller asked the stream to pay is decided "0" here. One
-- whose caller pays starts "p" (pending), and the daemon confirms it (settle.lua) before it tells
-- its caller "final: true": only a daemon that has this script's reply in hand may tell anyone, as
-- a daemon whose reply was lost answers "deferred" (the caller does not pay); a deferred rollback,
-- which its caller was told not to refund, is written "0" here, or turns a pending "p" into "0" if
-- an earlier attempt of the same token had reached Redis after all. A repeat of the same token
-- gets the tombstone's answer again; any other token finds the operation closed by "rollback".

--- @include outcome

local kind = ARGV[1]            -- "rollback" | "complete"
local mode = ARGV[2]            -- "direct" (a caller waits) | "deferred" (applying a deferred rollback)
local token = ARGV[3]           -- the rollback's token ("" for complete)
local reason = ARGV[4]
local operation_id = ARGV[5]
local lock_key = ARGV[6]
local tomb_ttl_ms = tonumber(ARGV[7])
local lease_ms = tonumber(ARGV[8])
local expect = ARGV[9] or ''    -- the stored version required, "" (or absent) when any
local payer = ARGV[10] or ''    -- a direct rollback's refund_by: "stream" is decided here (else ignored)

local k = op_keys()
local now = now_ms()

local closed_kind = tomb_kind(k.tomb)
if closed_kind then
  if closed_kind ~= kind then
    return {'closed', closed_kind}
  end
  if redis.call('TYPE', k.tomb)['ok'] == 'string' then
    -- An earlier version's tombstone: "<kind>\n<body>", its event already written by that version.
    local body = string.match(redis.call('GET', k.tomb), '^[^\n]*\n(.*)$') or ''
    if kind == 'complete' then
      return {'replay', '0', body == '1' and '1' or '0', '', '1'}
    end
    -- That version told every rollback's caller to refund and kept no token: each is told so again,
    -- but one that asks the stream to pay, which is told it does not.
    return {'replay', payer == 'stream' and '0' or '1', body ~= '' and '1' or '0', body, '1'}
  end
  local t = tomb_fields(k.tomb)
  if kind == 'rollback' and t['token'] ~= token then
    return {'closed', 'rollback'}
  end
  if mode == 'deferred' and t['final'] == 'p' then
    -- This token's caller was told "deferred": nobody was told to refund, so the stream pays.
    redis.call('HSET', k.tomb, 'final', '0', 'deferred', '1')
    t['final'] = '0'
  end
  local published = publish(k.tomb, k.marker, k.stream, tomb_ttl_ms)
  return {'replay', t['final'], t['existed'], t['state'], published}
end

local state = redis.call('GET', k.state)
if state then
  local expires = expires_at(state)
  if expires and expires <= now then
    expire_now(k, state, lock_key, operation_id, lease_ms, tomb_ttl_ms, now)
    return {'closed', 'expire'}
  end
end

if expect ~= '' then
  local stored_version = version_of(state)
  if stored_version ~= tonumber(expect) then
    return {'conflict', tostring(stored_version)}
  end
end

if not state and mode == 'deferred' then
  -- Neither the state nor a record of its ending: the operation was never stored, or it ended so
  -- long ago that its tombstone is gone (its terminal event was written then). A deferred rollback
  -- writes nothing here: a second terminal event could pay a refund twice.
  return {'nothing', '0', '0', '', '1'}
end

local final = '0'
if kind == 'rollback' and mode == 'direct' and payer ~= 'stream' then
  final = 'p'
end
local published = end_operation(k, state, {
  kind = kind, token = token, reason = reason, final = final,
  deferred = mode == 'deferred' and '1' or '0',
  lock_key = lock_key, operation_id = operation_id,
}, lease_ms, tomb_ttl_ms, now)
return {'done', final, state and '1' or '0', state or '', published}
