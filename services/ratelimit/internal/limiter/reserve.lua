-- reserve.lua evaluates every limit of one request atomically and takes its
-- share of all of them, or of none.
--
-- KEYS[1]            reservation record (hash)
-- KEYS[2i], KEYS[2i+1] state key and reservation set of limit i (i = 1..n)
--
-- ARGV[1] now in ms since the epoch, or 0 to use the Redis server clock
-- ARGV[2] reservation ttl in ms
-- ARGV[3] request id (member of the reservation sets)
-- ARGV[4] tokens to reserve
-- ARGV[5] cost to reserve, micro-dollars
-- ARGV[6] n, the number of limits
-- ARGV[7] mode: "reserve" takes, "peek" only reports (GetUsage) and writes nothing
-- ARGV[8] input price, micro-dollars per token (kept for Settle)
-- ARGV[9] output price, micro-dollars per token (kept for Settle)
-- then 5 values per limit: kind, limit, period ms, burst, calendar ("", "hour", "day", "month")
--
-- Kinds: 1 requests (GCRA), 2 tokens, 3 spend, 4 concurrency.
--
-- Reply: {allowed, denied index (0 = none), replayed, now, then per limit: remaining, reset ms, retry ms}.
-- retry ms is -1 when the request can never fit (it is larger than the limit).

-- Numbers become strings (for commands and the record) through %d where they
-- are whole: Lua's own conversion goes through %.14g, which costs several
-- times more and was a quarter of the script's time.
local function d(x) return string.format('%d', x) end

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local nowS = d(now)
local ttl = tonumber(ARGV[2])
local reqid = ARGV[3]
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local peek = ARGV[7] == 'peek'
local rec = KEYS[1]

if not peek then
  local prev = redis.call('GET', rec)
  if prev then
    -- Line 5 of the record is the original reply.
    local line, r = 0, {}
    for l in string.gmatch(prev, '[^\n]+') do
      line = line + 1
      if line == 5 then
        for v in string.gmatch(l, '[^,]+') do r[#r + 1] = tonumber(v) end
        break
      end
    end
    r[3] = 1
    return r
  end
end

local floor = math.floor
local ceil = math.ceil

-- Calendar windows in UTC, from Howard Hinnant's civil-date algorithms.
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAY = 86400000
local function window(cal)
  if cal == 'hour' then
    local s = floor(now / 3600000) * 3600000
    return s, s + 3600000
  elseif cal == 'day' then
    local s = floor(now / DAY) * DAY
    return s, s + DAY
  else -- month
    local y, m = civil_from_days(floor(now / DAY))
    local s = days_from_civil(y, m, 1) * DAY
    if m == 12 then y, m = y + 1, 1 else m = m + 1 end
    return s, days_from_civil(y, m, 1) * DAY
  end
end

-- Kinds arrive as digits; a lookup is cheaper than tonumber.
local KIND = {['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4}

-- Concurrency sets: the number of expired slots, removed unless peeking.
local function expired_slots(zkey)
  if peek then return redis.call('ZCOUNT', zkey, '-inf', nowS) end
  return redis.call('ZREMRANGEBYSCORE', zkey, '-inf', nowS)
end

-- Budget sets keep, in their state's field e, a lower bound of the earliest
-- expiry among their reservations (-1: none), so a decision looks for expired
-- reservations only once that time has come: about once per reservation ttl
-- when reservations are settled, as they normally are. A sweep returns the
-- amount held by expired reservations of the given window, removes them unless
-- peeking, and returns the set's new bound.
local NONE = -1
local MARK = '~'
local function sweep(zkey, win, e)
  if e == NONE or now < e then return 0, e end
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', nowS, 'LIMIT', '0', '512')
  local give = 0
  for _, m in ipairs(gone) do
    local w, a = string.match(m, '|(%-?%d+)|(%d+)$')
    if w and tonumber(w) == win then give = give + tonumber(a) end
  end
  if peek then return give, e end
  if #gone > 0 then redis.call('ZREM', zkey, unpack(gone)) end
  if #gone == 512 then return give, now end
  -- The set's first member is now its earliest live reservation, or the
  -- marker (score +inf) that keeps the set, and so its expiry, alive.
  local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if first[1] == nil or first[1] == MARK then return give, NONE end
  return give, tonumber(first[2])
end

local reply = {1, 0, 0, now}
local plan = {}
local allowed = true
local exp = now + ttl
local expS = d(exp)
-- A concurrency set lives a second past its latest reservation.
local ttlS = d(ttl + 1000)

for i = 1, n do
  local b = 9 + (i - 1) * 5
  local kind = KIND[ARGV[b + 1]]
  local limit = tonumber(ARGV[b + 2])
  local cal = ARGV[b + 5]
  -- Only the kinds that use them read a period (GCRA, rolling budgets) and a burst (GCRA).
  local period = 0
  if kind == 1 or (cal == '' and kind ~= 4) then period = tonumber(ARGV[b + 3]) end
  local skey = KEYS[2 * i]
  local zkey = KEYS[2 * i + 1]
  local remaining, reset, retry = 0, 0, 0
  local p = {kind = kind, skey = skey, zkey = zkey, limitS = ARGV[b + 2], periodS = ARGV[b + 3]}

  if kind == 1 then
    -- GCRA: one request every T ms, up to burst requests early.
    local T = period / limit
    local tau = T * tonumber(ARGV[b + 4])
    local tat = tonumber(redis.call('GET', skey) or now)
    if tat < now then tat = now end
    local eps = T * 1e-9
    local new = tat + T
    if peek then
      remaining = floor((tau + T - (tat - now)) / T + 1e-9)
      reset = tat - now
    elseif new - tau - T - now > eps then
      allowed = allowed and false
      remaining = floor((tau + T - (tat - now)) / T + 1e-9)
      reset = tat - now
      retry = new - tau - T - now
      if reply[2] == 0 then reply[2] = i end
    else
      remaining = floor((tau + T - (new - now)) / T + 1e-9)
      p.before = floor((tau + T - (tat - now)) / T + 1e-9)
      reset = new - now
      p.tat = new
    end
    p.T = T
  elseif kind == 2 or kind == 3 then
    local amount = kind == 2 and tokens or cost
    local amountS = kind == 2 and ARGV[4] or ARGV[5]
    if peek then amount, amountS = 0, '0' end
    local st = redis.call('HMGET', skey, 'v', 'w', 'x', 'e')
    p.x = tonumber(st[3] or 0)
    -- A state without e (written before it existed) is swept at once, and
    -- its set given the marker and the expiry (see below).
    local e0 = tonumber(st[4] or 0)
    p.old = not st[4]
    local v = tonumber(st[1] or 0)
    local win, wend = 0, 0
    if cal == '' then
      -- Rolling budget: a bucket that drains continuously at limit per period.
      local last = tonumber(st[2] or now)
      v = v - (now - last) * limit / period
      if v < 0 then v = 0 end
    else
      win, wend = window(cal)
      if tonumber(st[2] or -1) ~= win then v = 0 end
    end
    local give, e = sweep(zkey, win, e0)
    v = v - give
    if v < 0 then v = 0 end
    -- What a sweep gave back or learnt is kept even if the request is denied
    -- (when it is allowed, the state is written below anyway).
    if not peek and (give > 0 or (e ~= e0 and st[3])) then
      p.swept = {'v', string.format('%.17g', v), 'w', cal == '' and nowS or d(win), 'e', d(e)}
    end
    local fits = v + amount <= limit + 1e-9 and (amount > 0 or v < limit or peek)
    if fits then
      p.before = floor(limit - v + 1e-9)
      if not peek then v = v + amount end
      p.v = v
      p.win = win
      p.member = reqid .. '|' .. d(win) .. '|' .. amountS
      p.amount = amountS
    else
      allowed = false
      if reply[2] == 0 then reply[2] = i end
      if amount > limit then
        retry = -1
      elseif cal == '' then
        retry = (v + amount - limit) * period / limit
      else
        retry = wend - now
      end
    end
    remaining = floor(limit - v + 1e-9)
    if remaining < 0 then remaining = 0 end
    if cal == '' then reset = v * period / limit else reset = wend - now end
    p.e = e
    p.e0 = e0
    p.cal = cal
    p.limit = limit
    p.period = period
    p.wend = wend
  elseif kind == 4 then
    local gone = expired_slots(zkey)
    local count = redis.call('ZCARD', zkey)
    if peek then count = count - gone end
    if peek then
      remaining = limit - count
    elseif count + 1 > limit then
      allowed = false
      if reply[2] == 0 then reply[2] = i end
      remaining = limit - count
      local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
      if first[2] then retry = tonumber(first[2]) - now else retry = 0 end
      if limit < 1 then retry = -1 end
    else
      remaining = limit - count - 1
      p.before = limit - count
    end
    if remaining < 0 then remaining = 0 end
    -- A slot this request takes is back at the latest when the reservation expires.
    if not peek and reply[2] ~= i then reset = ttl end
    p.member = reqid
  end

  if reset < 0 then reset = 0 end
  reply[#reply + 1] = remaining
  reply[#reply + 1] = ceil(reset)
  reply[#reply + 1] = retry < 0 and -1 or ceil(retry)
  plan[i] = p
end

if peek then
  reply[1] = 0
  return reply
end
if not allowed then
  -- Nothing was taken: report what each fitting limit still has.
  reply[1] = 0
  for i = 1, n do
    local p = plan[i]
    if p.before then reply[5 + 3 * (i - 1)] = math.max(p.before, 0) end
    if p.swept then redis.call('HSET', p.skey, unpack(p.swept)) end
  end
  return reply
end

-- Every limit fits: take the request's share of each.
local entries = {}
for i = 1, n do
  local p = plan[i]
  if p.kind == 1 then
    redis.call('SET', p.skey, string.format('%.17g', p.tat), 'PX', d(ceil(p.tat - now) + 1000))
    entries[#entries + 1] = '1\t' .. p.skey .. '\t\t\t0\t\t0\t' .. string.format('%.17g', p.T)
  elseif p.kind == 2 or p.kind == 3 then
    -- Both keys live until x (kept in the state): past the budget's drain time or
    -- window end and past every reservation in the set, so the set never expires
    -- while the amounts it accounts for are counted. x only grows, and grows
    -- with room to spare, so most decisions write no expiry at all.
    local keep
    if p.cal == '' then keep = ceil(p.v * p.period / p.limit) else keep = p.wend - now end
    if keep < ttl then keep = ttl end
    local x = p.x
    local grow = now + keep + 1000 > x or p.old
    if grow then x = now + 2 * (keep + 1000) end
    local w = p.cal == '' and nowS or d(p.win)
    -- The reservation's expiry lowers the set's bound if it is the earliest.
    local e = p.e
    if e == NONE or exp < e then e = exp end
    if grow then
      -- The marker member keeps the set from vanishing when its last
      -- reservation is settled, so the expiry given here stays with it.
      local keepS = d(x - now)
      redis.call('HSET', p.skey, 'v', string.format('%.17g', p.v), 'w', w, 'x', d(x), 'e', d(e))
      redis.call('PEXPIRE', p.skey, keepS)
      redis.call('ZADD', p.zkey, expS, p.member, '+inf', MARK)
      redis.call('PEXPIRE', p.zkey, keepS)
    elseif e ~= p.e0 then
      redis.call('HSET', p.skey, 'v', string.format('%.17g', p.v), 'w', w, 'e', d(e))
      redis.call('ZADD', p.zkey, expS, p.member)
    else
      redis.call('HSET', p.skey, 'v', string.format('%.17g', p.v), 'w', w)
      redis.call('ZADD', p.zkey, expS, p.member)
    end
    entries[#entries + 1] = table.concat({p.kind == 2 and '2' or '3', p.skey, p.zkey, p.member, p.amount, p.cal, p.limitS, p.periodS}, '\t')
  else
    redis.call('ZADD', p.zkey, expS, p.member)
    redis.call('PEXPIRE', p.zkey, ttlS)
    entries[#entries + 1] = '4\t\t' .. p.zkey .. '\t' .. p.member .. '\t0\t\t0\t0'
  end
end

-- The record: one string, so writing it (and reading it at Settle) is one
-- command. Lines: state, expiry, input price, output price, the reply, then one
-- tab-separated line per limit. (Plain strings: cjson costs more than all the
-- rest of the script.)
local replyS = string.format(string.rep('%d,', #reply):sub(1, -2), unpack(reply))
redis.call('SET', rec, 'r\n' .. expS .. '\n' .. ARGV[8] .. '\n' .. ARGV[9] .. '\n' .. replyS ..
  '\n' .. table.concat(entries, '\n'), 'PX', ARGV[2])
return reply
