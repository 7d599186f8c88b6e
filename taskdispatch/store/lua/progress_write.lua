-- Stores a round's progress and, when there is news, appends its event; only while the
-- reporting round is still the task's own.
-- Returns 1 when written, 0 when the round is no longer the task's (ended, lost or deleted).
local task_key = KEYS[1]
local progress_key = KEYS[2]
local stream_key = KEYS[3]
local run_id = ARGV[1]
local value = ARGV[2]
local ttl_ms = ARGV[3]
local max_events = ARGV[4]
-- The event type, or '' when the value is only kept alive (nothing new to tell).
local kind = ARGV[5]
local data = ARGV[6]

if redis.call('HGET', task_key, F.run_id) ~= run_id then return 0 end
redis.call('SET', progress_key, value, 'PX', ttl_ms)
if kind ~= '' then
  redis.call('XADD', stream_key, 'MAXLEN', '~', max_events, '*', 'type', kind, 'data', data)
end
return 1
