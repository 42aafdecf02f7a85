-- outcome: shared by the scripts that end an operation (included with `--- @include outcome`).
--
-- An operation ends exactly once, in one of three ways: complete, rollback or expire. The script
-- that ends it writes, atomically with removing the state:
--   the tombstone  {prefix}:closed:{<lock_key>}:<operation_id>, a hash:
--     kind       "complete" | "rollback" | "expire"
--     token      the rollback's token ("" otherwise); a repeat with it gets the same answer
--     state      the state removed ("" when none was stored)
--     existed    "1" | "0"
--     reason     why (a rollback's reason, "ttl expired", "")
--     at         when, in Redis milliseconds
--     final      "1": a rollback caller was answered final (it pays the refund);
--                "0": nobody was (the outcome stream pays); "p": not decided yet (see settle.lua)
--     deferred   "1" when a daemon applied a rollback it had answered "deferred"
--     published  "1" once the outcome event is in the stream
--     lock_key, operation_id
--   the outbox marker {prefix}:outbox:{<lock_key>}:<operation_id>: exists while the event is not
--     yet in the stream; its value is the time (Redis ms) until which the daemon that wrote it owns
--     publishing; after that any daemon's sweeper publishes it (orphan.lua).
--
-- The outcome event is built from the tombstone alone, so an event published twice (a daemon
-- dying between XADD and marking it published) is identical apart from its stream id.
-- The stream is passed as the script's last key only where it shares the script's node (not on
-- Cluster); then the event is written in the same script, else the daemon writes it afterwards.
--
-- Write order matters under maxmemory: the first write of a script is the one Redis refuses when
-- out of memory, and after it every write goes through, so a script either changes nothing or all.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The kind of the tombstone at `key`, or nil. A string tombstone ("<kind>\n<body>") is the
-- layout of earlier versions, still read while those expire.
local function tomb_kind(key)
  local key_type = redis.call('TYPE', key)['ok']
  if key_type == 'none' then
    return nil
  elseif key_type == 'hash' then
    return redis.call('HGET', key, 'kind') or 'unknown'
  elseif key_type == 'string' then
    return string.match(redis.call('GET', key), '^[^\n]*')
  end
  return 'unknown'
end

local function tomb_fields(key)
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  return fields
end

-- The logical expiry of a state this daemon wrote ("_expires" at its end), or nil for a state
-- written otherwise (an earlier version, another engine): those expire by their key's TTL only.
local function expires_at(raw)
  return tonumber(string.match(string.sub(raw, -48), ',"_expires":(%d+)}$'))
end

-- The stored version of a state (0 for none): read from the tail this daemon writes, else decoded.
local function version_of(raw)
  if not raw then
    return 0
  end
  local version = string.match(string.sub(raw, -256), ',"version":(%d+),"_token":"[%w_%-]*","_expires":%d+}$')
  if version then
    return tonumber(version)
  end
  local ok, decoded = pcall(cjson.decode, raw)
  return ok and type(decoded) == 'table' and tonumber(decoded['version']) or 0
end

-- The event fields (flat, for XADD) of a tombstone's fields.
local function event_fields(t)
  local refunded = (t['kind'] == 'rollback' and t['final'] == '1') and '1' or '0'
  return {
    'event', t['kind'],
    'lock_key', t['lock_key'],
    'operation_id', t['operation_id'],
    'time', tostring(math.floor(tonumber(t['at']) / 1000)),
    'reason', t['reason'] or '',
    'existed', t['existed'] or '0',
    'refunded_by_caller', refunded,
    'deferred', t['deferred'] or '0',
    'state', t['state'] or '',
  }
end

-- Mark the tombstone's event as written: drop the marker, start the tombstone's lifetime.
local function mark_published(tomb, marker, tomb_ttl_ms)
  redis.call('HSET', tomb, 'published', '1')
  redis.call('DEL', marker)
  redis.call('PEXPIRE', tomb, tomb_ttl_ms)
end

-- Write the tombstone's event into the stream when the stream is one of this script's keys.
-- Returns "1" if it is written now, "0" if the daemon (or a sweeper) must write it. A failed XADD
-- (a wrong type at the stream key, say) leaves it to them rather than failing the close.
local function publish(tomb, marker, stream, tomb_ttl_ms)
  local t = tomb_fields(tomb)
  if t['published'] == '1' then
    redis.call('DEL', marker)
    return '1'
  end
  if t['final'] == 'p' or stream == nil then
    return '0'
  end
  local added = redis.pcall('XADD', stream, '*', unpack(event_fields(t)))
  if type(added) == 'table' and added['err'] then
    return '0'
  end
  mark_published(tomb, marker, tomb_ttl_ms)
  return '1'
end

-- End an operation: tombstone and marker first (the writes Redis may refuse when out of memory),
-- then remove the state and its index entry, then publish when the stream is ours.
local function end_operation(k, state_raw, fields, lease_ms, tomb_ttl_ms, now)
  local flat = {}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', k.tomb, 'state', state_raw or '', 'existed', state_raw and '1' or '0',
    'at', tostring(now), 'published', '0', unpack(flat))
  redis.call('SET', k.marker, tostring(now + lease_ms))
  if state_raw then
    redis.call('DEL', k.state)
  end
  redis.call('ZREM', k.index, fields['operation_id'])
  return publish(k.tomb, k.marker, k.stream, tomb_ttl_ms)
end

-- Expire an operation whose logical lifetime is over: its last saved state becomes the event.
local function expire_now(k, state_raw, lock_key, operation_id, lease_ms, tomb_ttl_ms, now)
  return end_operation(k, state_raw, {
    kind = 'expire', token = '', reason = 'ttl expired', final = '0', deferred = '0',
    lock_key = lock_key, operation_id = operation_id,
  }, lease_ms, tomb_ttl_ms, now)
end

-- The keys every per-operation script takes, in this order; the stream only when it is local.
local function op_keys()
  return { state = KEYS[1], index = KEYS[2], tomb = KEYS[3], marker = KEYS[4], stream = KEYS[5] }
end
