-- trim: keep the outcome stream near its cap without ever dropping an event a consumer group still owes.
-- KEYS[1] stream  {prefix}:audit
-- ARGV[1] cap     entries to keep for the operator's history (the audit op)
-- ARGV[2] batch   most entries removed by one call (the sweeper calls again while it removes some)
-- Returns {removed, length_after, held}: held is 1 when a group's unfinished work stops the trim
-- short of the cap (its oldest pending entry, or the first it was not given yet, is older).
--
-- MAXLEN would cut whatever is oldest, even a refund no worker has read. Instead this finds the
-- oldest entry any group still needs and trims by MINID, never past it.

local stream = KEYS[1]
local cap = tonumber(ARGV[1])
local batch = tonumber(ARGV[2])

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function older(a, b)
  local a_ms, a_seq = parse(a)
  local b_ms, b_seq = parse(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

if redis.call('EXISTS', stream) == 0 then
  return {0, 0, 0}
end
local length = redis.call('XLEN', stream)
if length <= cap then
  return {0, length, 0}
end

-- The oldest entry a group needs: its oldest pending one, else the last it was given (kept too).
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  local needed = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    needed = redis.call('XPENDING', stream, info['name'])[2]
  end
  if floor == nil or older(needed, floor) then
    floor = needed
  end
end

local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(length - cap, batch))
local last_ms, last_seq = parse(oldest[#oldest][1])
local threshold = string.format('%d-%d', last_ms, last_seq + 1)  -- MINID keeps entries at or past it
local held = 0
if floor ~= nil and older(floor, threshold) then
  threshold = floor
  held = 1
end
local removed = redis.call('XTRIM', stream, 'MINID', threshold)
return {removed, length - removed, held}
