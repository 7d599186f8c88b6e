-- Takes or renews the notifier's intake lock.
-- Returns 1 when the caller holds it now, else 0.
local lock_key = KEYS[1]
local token = ARGV[1]
local ttl_ms = ARGV[2]

if redis.call('GET', lock_key) == token then
  redis.call('PEXPIRE', lock_key, ttl_ms)
  return 1
end
if redis.call('SET', lock_key, token, 'NX', 'PX', ttl_ms) then return 1 end
return 0
