-- Deletes a lock only if the caller still holds it.
-- Returns 1 if deleted, 0 if it was not ours.
local lock_key = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lock_key) ~= token then return 0 end
return redis.call('DEL', lock_key)
