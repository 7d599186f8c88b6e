-- Renews an account lease and, with it, the round's expiry in the running zset and in the
-- places it holds in limits (limits.py), so a round whose worker died frees them together.
-- Returns 0 if the lease is no longer ours, 1 if renewed, 2 if renewed and an operator asked
-- the round to stop (the task's cancel_of names its run_id).
local lock_key = KEYS[1]
local task_key = KEYS[2]
local running_key = KEYS[3]
-- KEYS[4..]: the places zsets of the limits the round holds.
local first_place_key = 4
local token = ARGV[1]
local ttl_ms = ARGV[2]
local task_id = ARGV[3]
local expiry_ms = ARGV[4]
local run_id = ARGV[5]

if redis.call('GET', lock_key) ~= token then return 0 end
redis.call('PEXPIRE', lock_key, ttl_ms)
redis.call('ZADD', running_key, 'XX', expiry_ms, task_id)
for i = first_place_key, #KEYS do redis.call('ZADD', KEYS[i], 'XX', expiry_ms, task_id) end
if run_id ~= '' and redis.call('HGET', task_key, F.cancel_of) == run_id then return 2 end
return 1
