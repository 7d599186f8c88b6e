-- Frees a round's places and wakes, in each limit that has room, its first parked waiter.
-- Returns how many waiters it woke.
local due_key = KEYS[1]
local wake_key = KEYS[2]
-- KEYS[3..]: per limit the round holds: its places and waiters zsets.
local first_limit_key = 3
local limit_keys = 2
local now_ms = tonumber(ARGV[1])
local task_id = ARGV[2]
local task_prefix = ARGV[3]
local waiting_status = ARGV[4]
-- ARGV[5..]: per limit: name, max_concurrent (-1: none, or unknown: the limit was deleted).
local first_limit_arg = 5
local limit_args = 2

local woken = 0
for i = 0, (#KEYS - first_limit_key + 1) / limit_keys - 1 do
  local k, a = first_limit_key + limit_keys * i, first_limit_arg + limit_args * i
  local places_key, waiters_key = KEYS[k], KEYS[k + 1]
  local name, cap = ARGV[a], tonumber(ARGV[a + 1])
  redis.call('ZREM', places_key, task_id)
  if room(places_key, cap, now_ms) then woken = woken + wake(waiters_key, name, 1, now_ms) end
end
return woken
