-- A round stops waiting for a limit (its task was paused, deleted, moved to another slot): it
-- leaves the waiters, and the first parked waiter after it looks again (it may have been the
-- head that held a free place back).
-- Returns how many waiters it woke (0 or 1).
local waiters_key = KEYS[1]
local due_key = KEYS[2]
local wake_key = KEYS[3]
local now_ms = tonumber(ARGV[1])
local task_id = ARGV[2]
local task_prefix = ARGV[3]
local waiting_status = ARGV[4]
local limit_name = ARGV[5]

return leave(waiters_key, limit_name, task_id, now_ms)
