-- Admits one round, or parks it: the account lease, a place in every concurrency limit and a
-- start in every rate limit covering the task are taken together, or none is.
-- Returns {'ok'}: lease, places and starts taken, the task no longer waits;
-- {'gone'}: the task is no longer pending at that slot (nothing changed);
-- {'account_locked'}: another round of the account holds its lease (nothing taken; the
--   claim's message is handled, so its claim count is 0, as when parked);
-- {'stale'}: the definitions changed (nothing changed; reload and call again);
-- {code, name, in use, capacity, next start ms (-1: none)} with code 'limit_full' or
-- 'rate_limited' for the first limit without room: nothing taken, the round parked among
-- the waiters of every limit without room (and still of those it waited for before).
local lease_key = KEYS[1]
local version_key = KEYS[2]
local task_key = KEYS[3]
local due_key = KEYS[4]
local wake_key = KEYS[5]
-- KEYS[6..]: per covering limit (in name order): its places, starts and waiters zsets.
local first_limit_key = 6
local limit_keys = 3
local lease_token = ARGV[1]
local lease_ttl_ms = tonumber(ARGV[2])
local now_ms = tonumber(ARGV[3])
local task_id = ARGV[4]
local slot_ms = tonumber(ARGV[5])
-- The limits version the caller's definitions come from.
local caller_version = ARGV[6]
local park_until_ms = tonumber(ARGV[7])
local task_prefix = ARGV[8]
local waiters_prefix = ARGV[9]
local waiting_status = ARGV[10]
-- A token unique to this start (its member in the starts zsets).
local start_token = ARGV[11]
-- ARGV[12..]: per covering limit: name, max_concurrent, max_starts, per ms (-1: none).
local first_limit_arg = 12
local limit_args = 4

local function limit_at(i)
  local k, a = first_limit_key + limit_keys * i, first_limit_arg + limit_args * i
  return KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a], tonumber(ARGV[a + 1]),
         tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
end
local n = (#KEYS - first_limit_key + 1) / limit_keys
-- Deleted, paused or moved since the worker read it: nothing to admit (and no hash to write).
local task = redis.call('HMGET', task_key, F.status, F.next_ms)
if task[1] ~= waiting_status or tonumber(task[2]) ~= slot_ms then return {'gone'} end
if redis.call('EXISTS', lease_key) == 1 then
  redis.call('HSET', task_key, F.claims, 0)
  return {'account_locked'}
end
local version = redis.call('GET', version_key) or '0'
if version ~= caller_version then return {'stale'} end
local covering, blocked, first = {}, {}, nil
local only_rated, latest_start = true, -1
for i = 0, n - 1 do
  local places_key, starts_key, waiters_key, name, cap, max_starts, per_ms = limit_at(i)
  covering[name] = true
  local has_room = room(places_key, cap, now_ms)
  local next_start = -1
  local rate_full = false
  if max_starts >= 0 then
    redis.call('ZREMRANGEBYSCORE', starts_key, '-inf', now_ms - per_ms)
    local started = redis.call('ZCARD', starts_key)
    if started >= max_starts then
      rate_full = true
      local oldest = redis.call('ZRANGE', starts_key, started - max_starts,
                                started - max_starts, 'WITHSCORES')
      next_start = tonumber(oldest[2]) + per_ms
    end
  end
  local head, head_slot = first_waiter(waiters_key, name)
  local behind = head and head ~= task_id
                 and (head_slot < slot_ms or (head_slot == slot_ms and head < task_id))
  if not has_room or rate_full or behind then
    local code = 'limit_full'
    if has_room and (rate_full or cap < 0) then code = 'rate_limited' end
    -- Only a rate limit with nobody ahead frees by itself (at its next start); any other
    -- wait ends with a wake.
    if code ~= 'rate_limited' or behind then only_rated = false end
    if next_start > latest_start then latest_start = next_start end
    blocked[#blocked + 1] = {waiters_key, name}
    if not first then
      first = {code, name, redis.call('ZCARD', places_key), cap, next_start}
    end
  end
end
-- Limits it waited for that no longer cover it (its tags or their match changed): left.
local waits = redis.call('HGET', task_key, F.waits) or ''
for old in string.gmatch(waits, '[^,]+') do
  if not covering[old] then
    leave(waiters_prefix .. old, old, task_id, now_ms)
    waits = without(waits, old)
  end
end
if first then
  for _, b in ipairs(blocked) do
    redis.call('ZADD', b[1], slot_ms, task_id)
    if not listed(waits, b[2]) then waits = waits == '' and b[2] or waits .. ',' .. b[2] end
  end
  local due = park_until_ms
  if only_rated and latest_start < due then due = latest_start end
  redis.call('HSET', task_key, F.wait_limit, first[2], F.wait_code, first[1], F.parked, '1',
             F.claims, 0, F.waits, waits)
  if first[5] >= 0 then
    redis.call('HSET', task_key, F.wait_next_ms, first[5])
  else
    redis.call('HDEL', task_key, F.wait_next_ms)
  end
  redis.call('ZADD', due_key, due, task_id)
  return first
end
redis.call('SET', lease_key, lease_token, 'PX', lease_ttl_ms)
local expiry = now_ms + lease_ttl_ms
for i = 0, n - 1 do
  local places_key, starts_key, waiters_key, name, cap, max_starts, per_ms = limit_at(i)
  redis.call('ZREM', waiters_key, task_id)
  if cap >= 0 then redis.call('ZADD', places_key, expiry, task_id) end
  local next_start = now_ms
  if max_starts >= 0 then
    redis.call('ZADD', starts_key, now_ms, start_token)
    redis.call('PEXPIRE', starts_key, per_ms)
    local started = redis.call('ZCARD', starts_key)
    if started >= max_starts then
      local oldest = redis.call('ZRANGE', starts_key, started - max_starts,
                                started - max_starts, 'WITHSCORES')
      next_start = tonumber(oldest[2]) + per_ms
    end
  end
  -- Room left: the next waiter need not wait for a release (at the next free start, if rated).
  if cap < 0 or redis.call('ZCARD', places_key) < cap then
    wake(waiters_key, name, 1, next_start)
  end
end
-- HDEL, not HSET '': a task that waited for nothing is not written (a transaction WATCHing
-- it stays valid), and an empty field is not stored.
redis.call('HDEL', task_key, F.wait_limit, F.wait_code, F.wait_next_ms, F.parked, F.waits)
return {'ok'}
