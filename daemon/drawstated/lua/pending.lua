-- pending: live operations of one lock key, a page at a time, ordered by operation id.
-- KEYS[1] index   {prefix}:ops:{<lock_key>}
-- ARGV[1] base    {prefix}:state:{<lock_key>}:
-- ARGV[2] after   operation id the previous page ended on ("" for the first page)
-- ARGV[3] limit
-- Returns {next_after_or_"", id1, json1, id2, json2, ...}
--
-- State keys are built from index members (not declared in KEYS): safe on
-- Cluster because they share the index's {<lock_key>} hash tag and slot.

local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local limit = tonumber(ARGV[3])
local out = {''}
local taken = 0
for _, member in ipairs(members) do
  if member > ARGV[2] then
    local raw = redis.call('GET', ARGV[1] .. member)
    if raw then
      if taken == limit then
        out[1] = out[#out - 1]
        return out
      end
      out[#out + 1] = member
      out[#out + 1] = raw
      taken = taken + 1
    else
      redis.call('ZREM', KEYS[1], member)
    end
  end
end
return out
