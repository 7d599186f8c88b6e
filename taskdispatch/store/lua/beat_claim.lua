-- One beat tick: the beat's heartbeat, the housekeeping candidates (rounds whose lease expiry
-- passed, pauses whose end came), the claim of the due rounds whose hashes the caller passed,
-- and the ids it needs to pass next time.
-- The script reads the due ids itself (score <= now, at most `batch`) and claims those whose
-- task hash is in KEYS (the caller's prediction, from a previous reply): it touches no key it
-- was not given, so it is valid on Redis Cluster. A due id whose hash was not passed is
-- returned as unlisted, untouched; the caller claims it with a second call passing exactly
-- those hashes. A passed id that is not due (any more) is not touched: the check and the
-- claim are one atomic step, so two beats never claim one slot.
-- After its claims it returns the head of the due index (at most `batch` ids whose score is
-- at most now + lookahead, with their scores): the caller's prediction for its next tick.
-- Housekeeping candidates come whatever the dispatcher flag: a stopped dispatcher still
-- records lost rounds and ends timed pauses (it claims nothing and predicts nothing).
-- A claim holds the slot for the dispatch timeout; each further claim of the SAME slot (its
-- message is lost, or only waiting in a long queue: the two look alike from here) holds it
-- twice as long, up to 32x (fields claimed_slot, claims). In a backlog the queue then gets a
-- logarithmic number of copies of a waiting message, not one per timeout, which had buried
-- the useful messages under stale ones until no round ran at all.
-- Returns {enabled 0|1, the earliest later instant (ms) at which something falls due (a
-- slot, a lease expiry, a pause's end) or -1, L, R, U, H, C, L ids of rounds whose lease
-- expiry passed, R ids of pauses whose end came, U unlisted due ids, H pairs (id, score) of
-- the due index's head, then C claimed rounds, each: id, fence, slot ms, task_type,
-- sys_type, account_id, its own queue or ''}.
local due_key = KEYS[1]
local dispatcher_key = KEYS[2]
local beats_key = KEYS[3]
local running_key = KEYS[4]
local resume_key = KEYS[5]
-- KEYS[6..]: the task hashes of the ids in ARGV[11..], in the same order.
local first_task_key = 6
local now_ms = tonumber(ARGV[1])
local dispatch_timeout_ms = tonumber(ARGV[2])
local beat_id = ARGV[3]
local housekeeping_batch = tonumber(ARGV[4])
local heartbeat_retention_ms = tonumber(ARGV[5])
local enabled_field = ARGV[6]
local dispatcher_off = ARGV[7]
local due_status = ARGV[8]
local batch = tonumber(ARGV[9])
local lookahead_ms = tonumber(ARGV[10])
-- ARGV[11..]: the ids the caller predicts due (any order; one need not be due).
local first_task_id = 11

redis.call('ZADD', beats_key, now_ms, beat_id)
redis.call('ZREMRANGEBYSCORE', beats_key, '-inf', now_ms - heartbeat_retention_ms)
local lost = redis.call('ZRANGEBYSCORE', running_key, '-inf', now_ms, 'LIMIT', 0,
                        housekeeping_batch)
local resumes = redis.call('ZRANGEBYSCORE', resume_key, '-inf', now_ms, 'LIMIT', 0,
                           housekeeping_batch)
local wake = -1
local function later(key)
  local head = redis.call('ZRANGEBYSCORE', key, '(' .. now_ms, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if head[2] and (wake < 0 or tonumber(head[2]) < wake) then wake = tonumber(head[2]) end
end
later(running_key)
later(resume_key)
local enabled = 1
if redis.call('HGET', dispatcher_key, enabled_field) == dispatcher_off then enabled = 0 end
local claimed, unlisted, head = {}, {}, {}
if enabled == 1 then
  local listed = {}
  for i = 0, #ARGV - first_task_id do
    listed[ARGV[first_task_id + i]] = KEYS[first_task_key + i]
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', due_key, '-inf', now_ms, 'LIMIT', 0, batch)) do
    local task_key = listed[id]
    if not task_key then
      table.insert(unlisted, id)
    else
      local f = redis.call('HMGET', task_key, F.status, F.next_ms, F.task_type, F.sys_type,
                           F.account_id, F.claimed_slot, F.claims, F.queue)
      if f[1] ~= due_status or not f[2] or f[2] == '' then
        redis.call('ZREM', due_key, id)
      else
        local fence = redis.call('HINCRBY', task_key, F.fence, 1)
        local claims = 1
        if f[6] == f[2] and f[7] then claims = tonumber(f[7]) + 1 end
        redis.call('HSET', task_key, F.claimed_slot, f[2], F.claims, claims)
        local hold = dispatch_timeout_ms
        for _ = 2, math.min(claims, 6) do hold = hold * 2 end
        redis.call('ZADD', due_key, now_ms + hold, id)
        for _, v in ipairs({id, fence, f[2], f[3], f[4], f[5], f[8] or ''}) do
          table.insert(claimed, v)
        end
      end
    end
  end
  head = redis.call('ZRANGEBYSCORE', due_key, '-inf', now_ms + lookahead_ms, 'WITHSCORES',
                    'LIMIT', 0, batch)
  local first = head[2]
  if not first then first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')[2] end
  if first and (wake < 0 or tonumber(first) < wake) then wake = tonumber(first) end
end
local out = {enabled, wake, #lost, #resumes, #unlisted, #head / 2, #claimed / 7}
for _, list in ipairs({lost, resumes, unlisted, head, claimed}) do
  for _, v in ipairs(list) do table.insert(out, v) end
end
return out
