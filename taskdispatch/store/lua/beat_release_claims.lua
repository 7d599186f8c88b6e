-- Makes rounds whose messages a Redis restart may have lost due again at once, each only if
-- its claim still stands (due status, same fence and slot).
-- Returns how many were released.
local due_key = KEYS[1]
-- KEYS[2..]: the rounds' task hashes, one per round in ARGV[2..], in the same order.
local first_task_key = 2
local due_status = ARGV[1]
-- ARGV[2..]: per round: task id, fence, slot ms.
local first_round = 2
local round_args = 3

local released = 0
for i = 0, (#ARGV - first_round + 1) / round_args - 1 do
  local a = first_round + round_args * i
  local id, fence, slot = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local f = redis.call('HMGET', KEYS[first_task_key + i], F.status, F.fence, F.next_ms)
  if f[1] == due_status and f[2] == fence and f[3] == slot then
    redis.call('ZADD', due_key, tonumber(slot), id)
    released = released + 1
  end
end
return released
