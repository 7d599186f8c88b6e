-- A task's audit entries, newest first, at most `count`: those linked from its hash, then the
-- full copies of its legacy list (written by the release before, older than any linked
-- entry).
-- Returns {linked entries as {id, {field, value, ...}}, legacy entries as JSON}.
local trail_key = KEYS[1]
local task_key = KEYS[2]
local legacy_key = KEYS[3]
local prev_field = ARGV[1]
local count = tonumber(ARGV[2])

local linked = {}
local id = redis.call('HGET', task_key, F.audit)
while id and id ~= '' and #linked < count do
  local found = redis.call('XRANGE', trail_key, id, id)
  -- Trimmed from the trail, and so is every older entry of the task: the page ends.
  if #found == 0 then
    break
  end
  linked[#linked + 1] = found[1]
  local fields = found[1][2]
  id = false
  for i = 1, #fields, 2 do
    if fields[i] == prev_field then
      id = fields[i + 1]
    end
  end
end
local older = {}
if #linked < count then
  older = redis.call('LRANGE', legacy_key, 0, count - #linked - 1)
end
return {linked, older}
