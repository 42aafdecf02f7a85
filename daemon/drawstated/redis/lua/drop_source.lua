-- drop_source: delete an engine key the import took, only if it still holds what was imported.
-- Run by `drawstate import-legacy --delete-source` (importer.py).
-- KEYS[1] source  <engine prefix>:state:<lockKey>:<operationId> (the Go engine's key)
-- ARGV[1] digest  SHA1 hex of the value the import read
-- Returns "deleted" | "changed" (an engine still writing moved it on: kept, import again) | "gone"

local digest = ARGV[1]

if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
  return redis.call('EXISTS', KEYS[1]) == 1 and 'changed' or 'gone'
end
if redis.sha1hex(redis.call('GET', KEYS[1])) ~= digest then
  return 'changed'
end
redis.call('DEL', KEYS[1])
return 'deleted'
