-- settle.lua settles or releases one reservation atomically.
--
-- KEYS[1] reservation record (hash). The keys of the limits it holds are read
-- from the record; they carry the record's hash tag, so they live in the same
-- Redis Cluster slot.
--
-- ARGV[1] now in ms since the epoch, or 0 to use the Redis server clock
-- ARGV[2] mode: "settle" or "release"
-- ARGV[3] actual input tokens
-- ARGV[4] actual output tokens
-- ARGV[5] actual cost in micro-dollars, or -1 to price the tokens with the prices kept at reserve time
--
-- Reply: {done (1 or 0), state ("r" reserved, "s" settled, "x" released, "e" expired, "" unknown), cost charged}

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rec = KEYS[1]
local release = ARGV[2] == 'release'
local raw = redis.call('GET', rec)
if not raw then return {0, '', 0} end
-- See reserve.lua for the record's lines.
local lines = {}
for l in string.gmatch(raw, '[^\n]+') do lines[#lines + 1] = l end
local state = lines[1]
if state ~= 'r' then return {0, state, 0} end
if tonumber(lines[2]) <= now then return {0, 'e', 0} end
local pi, po = tonumber(lines[3]), tonumber(lines[4])

local tin = tonumber(ARGV[3])
local tout = tonumber(ARGV[4])
local tokens = tin + tout
local cost = tonumber(ARGV[5])
if cost < 0 then cost = math.ceil(tin * pi + tout * po - 1e-9) end
if release then
  tokens = 0
  cost = 0
end

local floor = math.floor
for li = 6, #lines do
  local e, pos = {}, 1
  while true do
    local tab = string.find(lines[li], '\t', pos, true)
    if not tab then e[#e + 1] = string.sub(lines[li], pos); break end
    e[#e + 1] = string.sub(lines[li], pos, tab - 1)
    pos = tab + 1
  end
  local kind, skey, zkey, member, cal = tonumber(e[1]), e[2], e[3], e[4], e[6]
  local amount, limit, period = tonumber(e[5]), tonumber(e[7]), tonumber(e[8])
  if kind == 1 then
    if release then
      -- Give the request back to GCRA: its theoretical arrival time moves back one interval.
      local tat = tonumber(redis.call('GET', skey) or 0)
      if tat > now then
        tat = tat - period
        if tat < now then tat = now end
        redis.call('SET', skey, string.format('%.17g', tat), 'PX', math.ceil(tat - now) + 1000)
      end
    end
  elseif kind == 4 then
    redis.call('ZREM', zkey, member)
  elseif redis.call('ZREM', zkey, member) == 1 then
    local actual = kind == 2 and tokens or cost
    local delta = actual - amount
    local st = redis.call('HMGET', skey, 'v', 'w', 'x')
    local v = tonumber(st[1] or 0)
    if cal == '' then
      local last = tonumber(st[2] or now)
      v = v - (now - last) * limit / period
      if v < 0 then v = 0 end
      v = v + delta
      if v < 0 then v = 0 end
      redis.call('HSET', skey, 'v', string.format('%.17g', v), 'w', now)
      -- Same expiry rule as reserve.lua: both keys live until x, which only grows.
      local keep = math.ceil(v * period / limit) + 1000
      if now + keep > tonumber(st[3] or 0) then
        local x = now + 2 * keep
        redis.call('HSET', skey, 'x', x)
        redis.call('PEXPIRE', skey, x - now)
        redis.call('PEXPIRE', zkey, x - now)
      end
    else
      local win = tonumber(string.match(member, '|(%-?%d+)|%d+$'))
      if tonumber(st[2] or -1) == win then
        v = v + delta
        if v < 0 then v = 0 end
        redis.call('HSET', skey, 'v', string.format('%.17g', v))
      end
    end
  end
end

redis.call('SET', rec, (release and 'x' or 's') .. string.sub(raw, 2), 'KEEPTTL')
return {1, release and 'x' or 's', cost}
