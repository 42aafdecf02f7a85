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

local tomb = redis.call('GET', KEYS[3])
if tomb then
  return {'closed', string.match(tomb, '^[^\n]*')}
end

local stored_raw = redis.call('GET', KEYS[1])
local stored = nil
if stored_raw then
  local ok, decoded = pcall(cjson.decode, stored_raw)
  if not ok or type(decoded) ~= 'table' then
    return {'corrupt', 'stored state is not a JSON object'}
  end
  stored = decoded
  if stored['_token'] == ARGV[2] then
    return {'replay', tonumber(stored['version']) or 0}
  end
end

local stored_version = 0
if stored then
  stored_version = tonumber(stored['version']) or 0
end

if ARGV[3] ~= '' then
  local expect = tonumber(ARGV[3])
  if (stored == nil and expect ~= 0) or (stored ~= nil and expect ~= stored_version) then
    return {'conflict', stored_version}
  end
end

if stored then
  if tonumber(ARGV[7]) < (tonumber(stored['completed_count']) or 0) then
    return {'stale', 'completed_count'}
  end
  local old_results = stored['results']
  local old_prizes = stored['prize_results']
  local has_results = type(old_results) == 'table' and #old_results > 0
  local has_prizes = type(old_prizes) == 'table' and #old_prizes > 0
  if has_results or has_prizes then
    -- Recorded draws are immutable: the stored lists must be prefixes of the new ones.
    local new = cjson.decode(ARGV[1] .. '}')
    if has_results then
      local new_results = new['results'] or {}
      for i = 1, #old_results do
        if new_results[i] ~= old_results[i] then
          return {'stale', 'results'}
        end
      end
    end
    if has_prizes then
      local new_prizes = new['prize_results'] or {}
      for i = 1, #old_prizes do
        local a, b = old_prizes[i], new_prizes[i]
        if type(b) ~= 'table' or a['id'] ~= b['id'] or a['name'] ~= b['name']
            or a['probability'] ~= b['probability'] or a['value'] ~= b['value'] then
          return {'stale', 'prize_results'}
        end
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
