-- Records one delivery attempt. A delivery is recorded delivered once (a second sender that
-- also got a 2xx finds it gone); any other outcome only by the holder of its current claim.
-- Returns 1 when recorded, 0 when it was not (the delivery is someone else's now).
local due_key = KEYS[1]
local delivery_key = KEYS[2]
local recent_key = KEYS[3]
local stats_key = KEYS[4]
local delivery_id = ARGV[1]
-- The claim token of the attempt.
local token = ARGV[2]
-- "delivered", "retrying", "given_up", or "dropped" (its notification is gone).
local outcome = ARGV[3]
-- The attempt (JSON, notifications.Attempt).
local attempt = ARGV[4]
local recent_kept = tonumber(ARGV[5])
-- The stats field to count it under ('' for none).
local stats_field = ARGV[6]
local attempts_made = ARGV[7]
local next_attempt_ms = ARGV[8]

if outcome == 'delivered' then
  if redis.call('EXISTS', delivery_key) == 0 then return 0 end
elseif redis.call('HGET', delivery_key, 'claim') ~= token then
  return 0
end
if outcome ~= 'dropped' then
  redis.call('LPUSH', recent_key, attempt)
  redis.call('LTRIM', recent_key, 0, recent_kept - 1)
end
if outcome == 'retrying' then
  redis.call('HSET', delivery_key, 'attempts', attempts_made)
  redis.call('ZADD', due_key, next_attempt_ms, delivery_id)
  return 1
end
redis.call('ZREM', due_key, delivery_id)
redis.call('DEL', delivery_key)
if stats_field ~= '' then redis.call('HINCRBY', stats_key, stats_field, 1) end
return 1
