"""Requests per client across every API process: a token bucket in Redis.

`TASKDISPATCH_RATE_LIMIT` (`Settings.parsed_rate_limit`): a client may send `count` requests
at once (the burst) and then one every `period / count`. Each bucket is one hash
(`Keys.rate`), taken from by one Lua call, so it holds across API replicas and costs one
round trip per request; the script reads Redis's own clock, so replicas with skewed clocks
share one time. An idle client's bucket expires once it would be full again.
"""

from __future__ import annotations

__all__ = ["TAKE"]

# Takes one token from a bucket, refilled continuously up to its capacity.
# KEYS[1] the bucket (hash: tokens, at ms). ARGV[1] capacity, ARGV[2] tokens per ms.
# Returns {1, 0} when the request may go, {0, ms until a token is back} when not.
TAKE = """
local cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or cap, tonumber(b[2]) or now
if now > at then tokens = math.min(cap, tokens + (now - at) * rate) end
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens, allowed = tokens - 1, 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', math.max(now, at))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate) + 1000)
return {allowed, wait}
"""
