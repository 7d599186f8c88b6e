-- Shared by the limits scripts (scripts.py puts it after each one's header, whose locals
-- task_prefix, waiting_status, due_key and wake_key it reads).
-- `listed` says whether the comma-separated `list` holds `name`; `without` drops it. `valid`
-- says whether `id` really waits for `name` at `slot` (a waiter deleted, paused or moved to
-- another slot is stale); `first_waiter` drops stale heads; `wake` makes up to `n` parked
-- waiters due at `at` (n < 0: all of them). A woken waiter stays a waiter (its place is kept
-- for it by the head rule) but is no longer parked, so it is woken once. `leave` takes `id`
-- out of the waiters and, if it was first (it may have been the head that held a free place
-- back), wakes the next one. `room` drops expired places and says whether one is free.
local function listed(list, name)
  return string.find(',' .. (list or '') .. ',', ',' .. name .. ',', 1, true) ~= nil
end
local function without(list, name)
  local kept = {}
  for item in string.gmatch(list or '', '[^,]+') do
    if item ~= name then kept[#kept + 1] = item end
  end
  return table.concat(kept, ',')
end
local function valid(id, slot, name)
  local f = redis.call('HMGET', task_prefix .. id, F.status, F.next_ms, F.waits, F.parked)
  return f[1] == waiting_status and tonumber(f[2]) == tonumber(slot) and listed(f[3], name),
         f[4] == '1'
end
local function first_waiter(waiters_key, name)
  for _ = 1, 32 do
    local head = redis.call('ZRANGE', waiters_key, 0, 0, 'WITHSCORES')
    if not head[1] then return nil end
    if valid(head[1], head[2], name) then return head[1], tonumber(head[2]) end
    redis.call('ZREM', waiters_key, head[1])
  end
  return nil
end
-- Rings the engine's wake-up list (one entry is enough: it only says "look again").
local function ring_wake()
  redis.call('LPUSH', wake_key, '1')
  redis.call('LTRIM', wake_key, 0, 0)
end
local function wake(waiters_key, name, n, at)
  local woken, i = 0, 0
  while n < 0 or woken < n do
    local batch = redis.call('ZRANGE', waiters_key, i, i + 63, 'WITHSCORES')
    if not batch[1] then break end
    i = i + 64
    for j = 1, #batch, 2 do
      local ok, parked = valid(batch[j], batch[j + 1], name)
      if not ok then
        redis.call('ZREM', waiters_key, batch[j])
        i = i - 1
      elseif parked and (n < 0 or woken < n) then
        redis.call('HDEL', task_prefix .. batch[j], F.parked)
        redis.call('ZADD', due_key, at, batch[j])
        woken = woken + 1
      end
    end
  end
  if woken > 0 then ring_wake() end
  return woken
end
local function leave(waiters_key, name, id, now)
  local rank = redis.call('ZRANK', waiters_key, id)
  redis.call('ZREM', waiters_key, id)
  if rank ~= 0 then return 0 end
  return wake(waiters_key, name, 1, now)
end
local function room(places_key, cap, now)
  redis.call('ZREMRANGEBYSCORE', places_key, '-inf', now)
  return cap < 0 or redis.call('ZCARD', places_key) < cap
end
