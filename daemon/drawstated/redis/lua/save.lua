-- save: write one DrawState, atomically, after the contract's checks in order.
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] tomb    {prefix}:closed:{<lock_key>}:<operation_id>
-- KEYS[4] marker  {prefix}:outbox:{<lock_key>}:<operation_id>
-- KEYS[5] stream  {prefix}:audit (only where it shares this node: not on Cluster)
-- ARGV: see the named locals below.
-- Returns {"ok", version} | {"replay", version} | {"closed", kind} | {"conflict", stored_version}
--       | {"stale", field} | {"corrupt", why}
--
-- States this script wrote end in ',"_digest":"D","version":N,"_token":"T","_expires":E}' (an
-- earlier version wrote no "_digest") and keep the daemon's canonical field order, so the checks
-- read them with string matching, in C, without decoding JSON. A state written otherwise (another
-- engine, the legacy importer) is decoded with cjson instead (the slow path), and so is a new
-- state whose recorded draws or identity do not match the stored text byte for byte.
--
-- The digest D (codec.py) hashes a state's identity and each draw list's length and SHA-256. A
-- daemon that knows the stored lists' lengths sends expect_digest, computed from the new state at
-- those lengths; equal to the stored D, the identity and every recorded draw are where they were,
-- and neither document is read for them (ops/accepted.py). Otherwise they are compared as text.
--
-- A state past its logical expiry ("_expires", Redis time) is expired here and now, as the
-- sweeper would (outcome.lua), and the save is refused with closed_by "expire".

--- @include outcome

local operation_id = ARGV[1]
local lock_key = ARGV[2]
local head = ARGV[3]            -- canonical state JSON without version, token, expiry, closing brace
local token = ARGV[4]           -- [A-Za-z0-9_-]{1,64}; equal to the stored one means a replay
local expect = ARGV[5]          -- expected stored version, "" when not given ("0" = create only)
local completed_count = tonumber(ARGV[6])
local ttl_ms = tonumber(ARGV[7])        -- logical lifetime: the operation expires this long after the save
local grace_ms = tonumber(ARGV[8])      -- the key outlives its logical expiry this long, for the sweeper
local tomb_ttl_ms = tonumber(ARGV[9])   -- tombstone lifetime once its event is published
local lease_ms = tonumber(ARGV[10])     -- how long the daemon that ends an operation owns publishing it
local digest = ARGV[11]                 -- the new state's "_digest" (hex), stored with it
local expect_digest = ARGV[12]          -- the stored "_digest" the new state extends, "" when unknown
local new_error_count = tonumber(ARGV[13])  -- failed draws in the new state; absent: found here

local k = op_keys()

local closed_kind = tomb_kind(k.tomb)
if closed_kind then
  return {'closed', closed_kind}
end

-- Bytes read from the end of a stored state for its digest, version, token and expiry.
local TAIL_BYTES = 320

local LIST_ENDS = {'],"prize_results":', '],"errors":', '],"start_time":'}

-- The text between the brackets of a list field in a canonical document ('' when omitted).
-- A bracket followed by ,"<next field>": cannot occur inside a JSON string (its quote would be escaped).
local function list_text(doc, field)
  local open_at = string.find(doc, '"' .. field .. '":[', 1, true)
  if not open_at then
    return ''
  end
  local first = open_at + #field + 4
  local close_at = nil
  for _, ending in ipairs(LIST_ENDS) do
    local at = string.find(doc, ending, first, true)
    if at and (close_at == nil or at < close_at) then
      close_at = at
    end
  end
  if not close_at then
    return nil
  end
  return string.sub(doc, first, close_at - 1)
end

-- Whether list text `new` starts with every element of list text `old`.
local function extends(old, new)
  if old == nil or new == nil then
    return false
  end
  if old == '' then
    return true
  end
  if string.sub(new, 1, #old) ~= old then
    return false
  end
  local after = string.sub(new, #old + 1, #old + 1)
  return after == '' or after == ','
end

-- The identity of a canonical head: total_count, start_time and the metadata text (the last field).
-- start_time follows the draw lists: found by the bracket that closes them (']' is rare, so the
-- plain find skips through them in C; a pattern scan from every position of 80 KB took 0.4 ms).
local function identity(doc)
  local at = string.find(doc, '],"start_time":', 1, true)
  at = at and at + 2 or string.find(doc, '"start_time":', 1, true)
  local start_time, metadata = nil, nil
  if at then
    start_time, metadata = string.match(doc, '^"start_time":(%d+),"last_update_time":%d+(.*)$', at)
  end
  return {
    total_count = string.match(doc, '"total_count":(%d+)'),
    start_time = start_time,
    metadata = metadata,
  }
end

local function same_prize(a, b)
  return type(a) == 'table' and type(b) == 'table' and a['id'] == b['id'] and a['name'] == b['name']
    and a['probability'] == b['probability'] and a['value'] == b['value']
end

local function same_error(a, b)
  return type(a) == 'table' and type(b) == 'table' and a['draw_index'] == b['draw_index']
    and a['error_message'] == b['error_message'] and a['timestamp'] == b['timestamp']
end

local function equal(a, b)
  return a == b
end

local SAME = { results = equal, prize_results = same_prize, errors = same_error }

-- Slow path: compare decoded lists element by element.
local function decoded_extends(old_list, new_list, same)
  if type(old_list) ~= 'table' then
    return true
  end
  new_list = type(new_list) == 'table' and new_list or {}
  for i = 1, #old_list do
    if not same(old_list[i], new_list[i]) then
      return false
    end
  end
  return true
end

-- The draw_index of each failed draw in an errors list's text, in order. Each element holds one
-- "draw_index" key, and no JSON string can hold its unescaped quotes.
local function error_indexes(text)
  local indexes = {}
  for index in string.gmatch(text or '', '"draw_index":(%d+)') do
    indexes[#indexes + 1] = tonumber(index)
  end
  return indexes
end

local function as_map(value)
  return type(value) == 'table' and value or {}
end

local function same_map(a, b)
  a, b = as_map(a), as_map(b)
  for key, value in pairs(a) do
    if b[key] ~= value then
      return false
    end
  end
  for key in pairs(b) do
    if a[key] == nil then
      return false
    end
  end
  return true
end

local now = now_ms()
local stored_raw = redis.call('GET', k.state)
local stored_version, stored_token, stored_completed, stored, stored_head = 0, nil, 0, nil, nil
local stored_digest = nil
if stored_raw then
  -- The tail is at most ~220 bytes; matching only there keeps a 512 KiB state cheap.
  local tail = string.sub(stored_raw, -TAIL_BYTES)
  local tail_at, _, tail_digest, version, stored_tok, expires = string.find(tail,
    ',"_digest":"(%x+)","version":(%d+),"_token":"([%w_%-]*)","_expires":(%d+)}$')
  if not version then
    tail_at, _, version, stored_tok, expires = string.find(tail,
      ',"version":(%d+),"_token":"([%w_%-]*)","_expires":(%d+)}$')
  end
  if version then
    stored_version, stored_token, stored_digest = tonumber(version), stored_tok, tail_digest
    stored_head = string.sub(stored_raw, 1, #stored_raw - (#tail - tail_at + 1))
    stored_completed = tonumber(string.match(stored_raw, '"completed_count":(%d+)')) or 0
    if tonumber(expires) <= now then
      expire_now(k, stored_raw, lock_key, operation_id, lease_ms, tomb_ttl_ms, now)
      return {'closed', 'expire'}
    end
  else
    local ok, decoded = pcall(cjson.decode, stored_raw)
    if not ok or type(decoded) ~= 'table' then
      return {'corrupt', 'stored state is not a JSON object'}
    end
    stored = decoded
    stored_version = tonumber(stored['version']) or 0
    stored_token = stored['_token']
    stored_completed = tonumber(stored['completed_count']) or 0
    local expires_slow = tonumber(stored['_expires'])
    if expires_slow and expires_slow <= now then
      expire_now(k, stored_raw, lock_key, operation_id, lease_ms, tomb_ttl_ms, now)
      return {'closed', 'expire'}
    end
  end
  if stored_token == token then
    return {'replay', stored_version}
  end
end

if expect ~= '' then
  local expected = tonumber(expect)
  if (stored_raw == nil and expected ~= 0) or (stored_raw ~= nil and expected ~= stored_version) then
    return {'conflict', stored_version}
  end
end

if stored_raw then
  if completed_count < stored_completed then
    return {'stale', 'completed_count'}
  end
end

-- A claim equal to the stored digest vouches for the identity and the recorded draws (see above).
if stored_raw and not (expect_digest ~= '' and expect_digest == stored_digest) then
  local new = nil
  -- The identity of an operation is fixed by its first save: the price lives in it.
  local old_id, new_id = stored_head and identity(stored_head), identity(head)
  for _, field in ipairs({'total_count', 'start_time', 'metadata'}) do
    if old_id == nil or old_id[field] ~= new_id[field] then
      stored = stored or cjson.decode(stored_raw)
      new = new or cjson.decode(head .. '}')
      local same = field == 'metadata' and same_map or equal
      if not same(stored[field], new[field]) then
        return {'stale', field}
      end
    end
  end
  -- Recorded draws, delivered or failed, are immutable: the stored lists must be prefixes of the new ones.
  for _, field in ipairs({'results', 'prize_results', 'errors'}) do
    if stored ~= nil or not extends(list_text(stored_raw, field), list_text(head, field)) then
      stored = stored or cjson.decode(stored_raw)
      new = new or cjson.decode(head .. '}')
      if not decoded_extends(stored[field], new[field], SAME[field]) then
        return {'stale', field}
      end
    end
  end
end

-- A failed draw is numbered after every draw made before it: the stored state's draws (completed +
-- failed) keep their numbers, so a save may not mark one of those failed. Otherwise a draw already
-- granted would be refunded, and the results after it would shift to other numbers. Checked apart
-- from the digest claim, which vouches for the lists, not for the numbers appended to them.
if stored_raw and new_error_count ~= 0 then
  local new_indexes = error_indexes(list_text(head, 'errors'))
  local stored_errors
  if stored then
    stored_errors = type(stored['errors']) == 'table' and #stored['errors'] or 0
  else
    stored_errors = #error_indexes(list_text(stored_raw, 'errors'))
  end
  local first_new = new_indexes[stored_errors + 1]
  if first_new and first_new <= stored_completed + stored_errors then
    return {'stale', 'errors'}
  end
end

local version = stored_version + 1
local digest_field = digest ~= '' and (',"_digest":"' .. digest .. '"') or ''
local key_ttl_ms = ttl_ms + grace_ms
redis.call('SET', k.state,
  head .. digest_field .. ',"version":' .. string.format('%d', version) .. ',"_token":"' .. token
    .. '","_expires":' .. string.format('%d', now + ttl_ms) .. '}',
  'PX', key_ttl_ms)
-- The newest save must score highest even within one millisecond (load picks the top).
local score = now
local top = redis.call('ZREVRANGE', k.index, 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= score then
  score = tonumber(top[2])
  if top[1] ~= operation_id then
    score = score + 1
  end
end
redis.call('ZADD', k.index, score, operation_id)
if redis.call('PTTL', k.index) < key_ttl_ms then
  redis.call('PEXPIRE', k.index, key_ttl_ms)
end
return {'ok', version}
