-- Wakes the waiters of one limit after its definition changed: as many as it has free places
-- (one, for a rate limit: it wakes the next), or, when the limit is gone, every waiter, which
-- stops waiting for it and is due now (it keeps its place among the waiters of its other
-- limits, and looks again).
-- Returns how many waiters it woke.
local waiters_key = KEYS[1]
local places_key = KEYS[2]
local due_key = KEYS[3]
local wake_key = KEYS[4]
local now_ms = tonumber(ARGV[1])
local task_prefix = ARGV[2]
local waiting_status = ARGV[3]
local limit_name = ARGV[4]
-- max_concurrent (-1: none).
local cap = tonumber(ARGV[5])
-- '1' when the limit is gone.
local deleted = ARGV[6]

if deleted == '1' then
  local woken = 0
  for _, id in ipairs(redis.call('ZRANGE', waiters_key, 0, -1)) do
    local task_key = task_prefix .. id
    local f = redis.call('HMGET', task_key, F.status, F.waits, F.wait_limit)
    if f[1] == waiting_status and listed(f[2], limit_name) then
      local waits = without(f[2], limit_name)
      redis.call('HDEL', task_key, F.parked)
      if waits == '' then
        redis.call('HDEL', task_key, F.waits)
      else
        redis.call('HSET', task_key, F.waits, waits)
      end
      if waits == '' or f[3] == limit_name then
        redis.call('HDEL', task_key, F.wait_limit, F.wait_code, F.wait_next_ms)
      end
      redis.call('ZADD', due_key, now_ms, id)
      woken = woken + 1
    end
  end
  if woken > 0 then ring_wake() end
  return woken
end
redis.call('ZREMRANGEBYSCORE', places_key, '-inf', now_ms)
local free = 1
if cap >= 0 then free = cap - redis.call('ZCARD', places_key) end
if free <= 0 then return 0 end
return wake(waiters_key, limit_name, free, now_ms)
