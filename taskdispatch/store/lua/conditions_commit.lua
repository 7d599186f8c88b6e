-- One condition watcher look's write, applied only if no other look wrote since this one read
-- the bookkeeping (its token unchanged), so that two looks never both announce a change.
-- Returns 1 when written, 0 when another look wrote first.
local conditions_key = KEYS[1]
local book_key = KEYS[2]
local events_key = KEYS[3]
local token_field = ARGV[1]
-- The token this look read ('' when none).
local read_token = ARGV[2]
local max_events = ARGV[3]
-- JSON {book: {field: value} (the new token among them), open: {condition: state} (opened,
-- or announced again), close: [condition], events: [[field, value, ...] per event]}.
local change_json = ARGV[4]

local change = cjson.decode(change_json)
if (redis.call('HGET', book_key, token_field) or '') ~= read_token then return 0 end
for field, value in pairs(change['book']) do redis.call('HSET', book_key, field, value) end
for condition, state in pairs(change['open']) do
  redis.call('HSET', conditions_key, condition, state)
end
for _, condition in ipairs(change['close']) do redis.call('HDEL', conditions_key, condition) end
for _, entry in ipairs(change['events']) do
  redis.call('XADD', events_key, 'MAXLEN', '~', max_events, '*', unpack(entry))
end
return 1
