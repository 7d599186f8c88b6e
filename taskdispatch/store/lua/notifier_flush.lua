-- Turns closed notification groups into deliveries. A window already flushed (by another
-- process) or whose close time has not come is left alone; an empty group makes no delivery.
-- The delivery's fields: name, event, occurred_at_ms (its first event), count, tasks (a JSON
-- list of the earliest entries), attempts, created_ms (see notifier.queue_delivery).
-- Returns how many deliveries it made.
local windows_key = KEYS[1]
local due_key = KEYS[2]
-- KEYS[3..]: per window: its group hash, the new delivery's hash.
local first_window_key = 3
local window_keys = 2
local now_ms = tonumber(ARGV[1])
-- Subjects listed in a delivery at most.
local listed_max = tonumber(ARGV[2])
-- ARGV[3..]: per window: its member ("<name>|<event>"), name, event, the new delivery's id.
local first_window_arg = 3
local window_args = 4

local made = 0
for i = 0, (#KEYS - first_window_key + 1) / window_keys - 1 do
  local k = first_window_key + window_keys * i
  local group_key, delivery_key = KEYS[k], KEYS[k + 1]
  local a = first_window_arg + window_args * i
  local member, name, event, id = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local close = redis.call('ZSCORE', windows_key, member)
  if close and tonumber(close) <= now_ms then
    redis.call('ZREM', windows_key, member)
    local values = redis.call('HVALS', group_key)
    redis.call('DEL', group_key)
    if #values > 0 then
      local entries = {}
      for _, value in ipairs(values) do
        local ok, decoded = pcall(cjson.decode, value)
        local at = ok and tonumber(decoded['at_ms']) or now_ms
        entries[#entries + 1] = {at, value}
      end
      table.sort(entries, function(x, y)
        if x[1] == y[1] then return x[2] < y[2] end
        return x[1] < y[1]
      end)
      local listed = {}
      for j = 1, math.min(listed_max, #entries) do listed[j] = entries[j][2] end
      redis.call('HSET', delivery_key, 'name', name, 'event', event,
                 'occurred_at_ms', string.format('%.0f', entries[1][1]), 'count', #entries,
                 'tasks', '[' .. table.concat(listed, ',') .. ']', 'attempts', 0,
                 'created_ms', string.format('%.0f', now_ms))
      redis.call('ZADD', due_key, now_ms, id)
      made = made + 1
    end
  end
end
return made
