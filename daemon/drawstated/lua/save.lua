-- save: write one DrawState, atomically, after the contract's checks in order.
-- KEYS[1] state   {prefix}:state:{<lock_key>}:<operation_id>
-- KEYS[2] index   {prefix}:ops:{<lock_key>}
-- KEYS[3] closed  {prefix}:closed:{<lock_key>}:<operation_id>
-- ARGV[1] head    canonical state JSON without version, token and closing brace
-- ARGV[2] token   [A-Za-z0-9_-]{1,64}; equal to the stored one means a replay
-- ARGV[3] expect  expected stored version, "" when not given ("0" = create only)
-- ARGV[4] ttl_ms  state and tombstone lifetime; the index is extended to it, never shortened
-- ARGV[5] now_ms  index score (last save time; bumped past the top score so the newest wins)
-- ARGV[6] operation_id
-- ARGV[7] completed_count of the new state
-- Returns {"ok", version} | {"replay", version} | {"closed", kind} | {"conflict", stored_version}
--       | {"stale", field} | {"corrupt", why}
--
-- States this script wrote end in ',"version":N,"_token":"T"}' and keep the
-- daemon's canonical field order, so the checks read them with string
-- matching, in C, without decoding JSON. A state written by another engine
-- is decoded with cjson instead (the slow path), and so is a new state whose
-- recorded draws do not match the stored text byte for byte.

local tomb = redis.call('GET', KEYS[3])
if tomb then
  return {'closed', string.match(tomb, '^[^\n]*')}
end

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

local function same_prize(a, b)
  return type(b) == 'table' and a['id'] == b['id'] and a['name'] == b['name']
    and a['probability'] == b['probability'] and a['value'] == b['value']
end

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

local function equal(a, b)
  return a == b
end

local stored_raw = redis.call('GET', KEYS[1])
local stored_version, stored_token, stored_completed, stored = 0, nil, 0, nil
if stored_raw then
  -- The tail is at most ~110 bytes; matching only there keeps a 512 KiB state cheap.
  local version, token = string.match(string.sub(stored_raw, -128), ',"version":(%d+),"_token":"([%w_%-]*)"}$')
  if version then
    stored_version, stored_token = tonumber(version), token
    stored_completed = tonumber(string.match(stored_raw, '"completed_count":(%d+)')) or 0
  else
    local ok, decoded = pcall(cjson.decode, stored_raw)
    if not ok or type(decoded) ~= 'table' then
      return {'corrupt', 'stored state is not a JSON object'}
    end
    stored = decoded
    stored_version = tonumber(stored['version']) or 0
    stored_token = stored['_token']
    stored_completed = tonumber(stored['completed_count']) or 0
  end
  if stored_token == ARGV[2] then
    return {'replay', stored_version}
  end
end

if ARGV[3] ~= '' then
  local expect = tonumber(ARGV[3])
  if (stored_raw == nil and expect ~= 0) or (stored_raw ~= nil and expect ~= stored_version) then
    return {'conflict', stored_version}
  end
end

if stored_raw then
  if tonumber(ARGV[7]) < stored_completed then
    return {'stale', 'completed_count'}
  end
  -- Recorded draws are immutable: the stored lists must be prefixes of the new ones.
  for _, field in ipairs({'results', 'prize_results'}) do
    if stored ~= nil or not extends(list_text(stored_raw, field), list_text(ARGV[1], field)) then
      stored = stored or cjson.decode(stored_raw)
      local new = cjson.decode(ARGV[1] .. '}')
      local same = field == 'results' and equal or same_prize
      if not decoded_extends(stored[field], new[field], same) then
        return {'stale', field}
      end
    end
  end
end

local version = stored_version + 1
local ttl_ms = tonumber(ARGV[4])
redis.call('SET', KEYS[1],
  ARGV[1] .. ',"version":' .. string.format('%d', version) .. ',"_token":"' .. ARGV[2] .. '"}',
  'PX', ttl_ms)
-- The newest save must score highest even within one millisecond (load picks the top).
local score = tonumber(ARGV[5])
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= score then
  score = tonumber(top[2])
  if top[1] ~= ARGV[6] then
    score = score + 1
  end
end
redis.call('ZADD', KEYS[2], score, ARGV[6])
if redis.call('PTTL', KEYS[2]) < ttl_ms then
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
end
return {'ok', version}
