-- Adds one entry to the audit trail and links it from its task's hash: the entry's prev
-- field names the task's entry before it.
-- Returns the entry's id.
local trail_key = KEYS[1]
-- KEYS[2..]: at most one, the task's hash (absent for an entry of no task or of a deleted
-- one).
local task_keys = 2
local kept = ARGV[1]
local prev_field = ARGV[2]
-- ARGV[3..]: the entry's fields and values.
local first_field = 3

local task_key = KEYS[task_keys]
local entry = {}
for i = first_field, #ARGV do
  entry[#entry + 1] = ARGV[i]
end
local prev = ''
if task_key then
  prev = redis.call('HGET', task_key, F.audit) or ''
end
entry[#entry + 1] = prev_field
entry[#entry + 1] = prev
local id = redis.call('XADD', trail_key, 'MAXLEN', '~', kept, '*', unpack(entry))
-- The change that is audited wrote the hash in this transaction; never make a bare one.
if task_key and redis.call('EXISTS', task_key) == 1 then
  redis.call('HSET', task_key, F.audit, id)
end
return id
