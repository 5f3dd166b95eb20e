-- Deletes a cart when its version matches.
-- KEYS[1]  the cart's hash
-- ARGV[1]  the expected version, or '' for none
-- Answers {0} deleted, {1} no such cart, {2, version} stale.
local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  return {1}
end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= tonumber(version) then
  return {2, tonumber(version)}
end
redis.call('DEL', KEYS[1])
return {0}
