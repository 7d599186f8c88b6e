-- Claims due deliveries for one attempt each. A delivery no longer due (another sender
-- claimed it) is skipped; one whose hash is gone is dropped from the due set.
-- Returns {id, {field, value, ...}, ...} of the deliveries claimed (first_try_ms set on the
-- first claim, claim = the sender's token).
local due_key = KEYS[1]
-- KEYS[2..]: the deliveries' hashes, one per id in ARGV[4..], in the same order.
local first_delivery_key = 2
local now_ms = tonumber(ARGV[1])
local claim_ms = tonumber(ARGV[2])
local token = ARGV[3]
-- ARGV[4..]: the deliveries' ids.
local first_delivery_id = 4

local out = {}
for i = 0, #KEYS - first_delivery_key do
  local delivery_key, id = KEYS[first_delivery_key + i], ARGV[first_delivery_id + i]
  local due = redis.call('ZSCORE', due_key, id)
  if due and tonumber(due) <= now_ms then
    if redis.call('EXISTS', delivery_key) == 0 then
      redis.call('ZREM', due_key, id)
    else
      redis.call('ZADD', due_key, now_ms + claim_ms, id)
      redis.call('HSET', delivery_key, 'claim', token)
      redis.call('HSETNX', delivery_key, 'first_try_ms', string.format('%.0f', now_ms))
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGETALL', delivery_key)
    end
  end
end
return out
