-- Changes one line of a cart atomically and answers the whole cart.
-- KEYS[1]  the cart's hash
-- ARGV[1]  'add' (add to the line), 'set' (set the line; 0 removes) or 'remove'
-- ARGV[2]  the line's field, 'l:<sku>'
-- ARGV[3]  the quantity to add or set
-- ARGV[4]  the expected version, or '' for none
-- ARGV[5]  the cart's time to live in milliseconds
-- ARGV[6]  the product's currency, or '' when not adding
-- ARGV[7]  the largest quantity of a line
-- ARGV[8]  the largest number of lines
-- Answers {0, pttl, field, value, ...} or an error code:
-- {1} no such cart, {2, version} stale, {3} currency mismatch,
-- {4, current} quantity too large, {5} too many lines.
local key = KEYS[1]
local head = redis.call('HMGET', key, 'version', 'currency')
if not head[1] then
  return {1}
end
local version = tonumber(head[1])
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= version then
  return {2, version}
end
if ARGV[6] ~= '' and head[2] ~= ARGV[6] then
  return {3}
end

local current = tonumber(redis.call('HGET', key, ARGV[2]) or '0')
local target
if ARGV[1] == 'add' then
  target = current + tonumber(ARGV[3])
elseif ARGV[1] == 'set' then
  target = tonumber(ARGV[3])
else
  target = 0
end

if target > tonumber(ARGV[7]) then
  return {4, current}
end

if target ~= current then
  if target == 0 then
    redis.call('HDEL', key, ARGV[2])
  else
    if current == 0 then
      -- Three fields are not lines: version, currency, created_at.
      if redis.call('HLEN', key) - 3 >= tonumber(ARGV[8]) then
        return {5}
      end
    end
    redis.call('HSET', key, ARGV[2], target)
  end
  redis.call('HINCRBY', key, 'version', 1)
end
redis.call('PEXPIRE', key, ARGV[5])

local reply = {0, tonumber(ARGV[5])}
local fields = redis.call('HGETALL', key)
for i = 1, #fields do
  reply[#reply + 1] = fields[i]
end
return reply
