-- Takes one token from a client's bucket, refilled continuously up to its capacity; reads
-- Redis's own clock, so API replicas with skewed clocks share one time. An idle bucket
-- expires once it would be full again.
-- Returns {1, 0} when the request may go, {0, ms until a token is back} when not.
local bucket_key = KEYS[1]
local capacity = tonumber(ARGV[1])
local tokens_per_ms = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', bucket_key, 'tokens', 'at')
local tokens, at = tonumber(b[1]) or capacity, tonumber(b[2]) or now
if now > at then tokens = math.min(capacity, tokens + (now - at) * tokens_per_ms) end
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens, allowed = tokens - 1, 1
else
  wait = math.ceil((1 - tokens) / tokens_per_ms)
end
redis.call('HSET', bucket_key, 'tokens', tostring(tokens), 'at', math.max(now, at))
redis.call('PEXPIRE', bucket_key, math.ceil((capacity - tokens) / tokens_per_ms) + 1000)
return {allowed, wait}
