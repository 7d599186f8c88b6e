-- One beat tick: the beat's heartbeat, the housekeeping candidates (rounds whose lease expiry
-- passed, pauses whose end came) and the claim of the due rounds the caller read.
-- The caller reads the due ids first (a plain ZRANGEBYSCORE of the due zset, at most its
-- batch) and passes their hashes: each is claimed only if it is still due here, so two beats
-- never claim one slot, and a slot that fell due after that read stays due for the next tick
-- (the wake-up returned is then at most now). Housekeeping candidates come whatever the
-- dispatcher flag: a stopped dispatcher still records lost rounds and ends timed pauses.
-- A claim holds the slot for the dispatch timeout; each further claim of the SAME slot (its
-- message is lost, or only waiting in a long queue: the two look alike from here) holds it
-- twice as long, up to 32x (fields claimed_slot, claims). In a backlog the queue then gets a
-- logarithmic number of copies of a waiting message, not one per timeout, which had buried
-- the useful messages under stale ones until no round ran at all.
-- Returns {enabled 0|1, the earliest later instant (ms) at which something falls due (a
-- slot, a lease expiry, a pause's end) or -1, L, R, L ids of rounds whose lease expiry
-- passed, R ids of pauses whose end came, then per claimed round: id, fence, slot ms,
-- task_type, sys_type, account_id, its own queue or ''}.
local due_key = KEYS[1]
local dispatcher_key = KEYS[2]
local beats_key = KEYS[3]
local running_key = KEYS[4]
local resume_key = KEYS[5]
-- KEYS[6..]: the candidates' task hashes, one per id in ARGV[9..], in the same order.
local first_task_key = 6
local now_ms = tonumber(ARGV[1])
local dispatch_timeout_ms = tonumber(ARGV[2])
local beat_id = ARGV[3]
local housekeeping_batch = tonumber(ARGV[4])
local heartbeat_retention_ms = tonumber(ARGV[5])
local enabled_field = ARGV[6]
local dispatcher_off = ARGV[7]
local due_status = ARGV[8]
-- ARGV[9..]: the candidates' task ids (read as due by the caller).
local first_task_id = 9

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
local claimed = {}
if enabled == 1 then
  for i = 0, #ARGV - first_task_id do
    local id, task_key = ARGV[first_task_id + i], KEYS[first_task_key + i]
    local score = redis.call('ZSCORE', due_key, id)
    -- Claimed by another beat since the caller read it (or gone): not ours to claim.
    if score and tonumber(score) <= now_ms then
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
  local head = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if head[2] and (wake < 0 or tonumber(head[2]) < wake) then wake = tonumber(head[2]) end
end
local out = {enabled, wake, #lost, #resumes}
for _, id in ipairs(lost) do table.insert(out, id) end
for _, id in ipairs(resumes) do table.insert(out, id) end
for _, v in ipairs(claimed) do table.insert(out, v) end
return out
