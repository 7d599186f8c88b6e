-- Reads tasks with every fact their waiting reasons need, in one round trip: the dispatcher
-- flag, live workers and their queues, each task's hash, whether its account's lease is held,
-- the use and definition of the limit it waits for, and its round's progress. Read only; it
-- follows each task to its account's lease and its limit's places, keys known only once the
-- hash is read (the one other exception to "only the keys passed", see scripts.py).
-- Returns {flag or nil, {live worker, ...}, {worker, queues, ...}, {each task's HGETALL},
-- {1 when its account's lease is held, else 0, per task}, {limit, places in use, its
-- definition or nil, ...} for each limit a task waits for, {its progress while a round runs,
-- else nil, per task}}.
local dispatcher_key = KEYS[1]
-- Hostname -> heartbeat ms.
local workers_key = KEYS[2]
local worker_queues_key = KEYS[3]
local limits_key = KEYS[4]
-- KEYS[5..]: per task: its hash, its progress key.
local first_task_key = 5
local task_keys = 2
local enabled_field = ARGV[1]
-- Heartbeats since this ms are alive.
local alive_since_ms = ARGV[2]
local lease_prefix = ARGV[3]
local places_prefix = ARGV[4]
local now_ms = ARGV[5]

local hashes, locked, limits, seen, progress = {}, {}, {}, {}, {}
for i = 0, (#KEYS - first_task_key + 1) / task_keys - 1 do
  local task_key = KEYS[first_task_key + task_keys * i]
  local progress_key = KEYS[first_task_key + task_keys * i + 1]
  local h = redis.call('HGETALL', task_key)
  hashes[#hashes + 1] = h
  local account, waits, run = nil, nil, nil
  for j = 1, #h, 2 do
    if h[j] == F.account_id then account = h[j + 1]
    elseif h[j] == F.wait_limit then waits = h[j + 1]
    elseif h[j] == F.run_id then run = h[j + 1] end
  end
  locked[#locked + 1] = account and redis.call('EXISTS', lease_prefix .. account) or 0
  progress[#progress + 1] = run and run ~= '' and redis.call('GET', progress_key) or false
  if waits and waits ~= '' and not seen[waits] then
    seen[waits] = true
    limits[#limits + 1] = waits
    limits[#limits + 1] = redis.call('ZCOUNT', places_prefix .. waits, '(' .. now_ms, '+inf')
    limits[#limits + 1] = redis.call('HGET', limits_key, waits)
  end
end
return {redis.call('HGET', dispatcher_key, enabled_field),
        redis.call('ZRANGEBYSCORE', workers_key, alive_since_ms, '+inf'),
        redis.call('HGETALL', worker_queues_key), hashes, locked, limits, progress}
