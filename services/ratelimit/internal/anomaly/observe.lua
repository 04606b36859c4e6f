-- observe.lua counts one llm_call event for one subject and returns what the
-- detector needs to judge it, in one round trip. Every key is the subject's
-- (one hash tag, one Cluster slot).
--
-- An event is counted once: KEYS[1] marks it counted for as long as the
-- consumer may redeliver it, and a redelivery changes nothing. The marker is
-- "1", or, when judging the event failed (an alert could not be published),
-- the detector stores the reply in it so that the redelivery judges again.
--
-- KEYS: 1 counted marker, 2 first-seen time, 3 the hour's counters (hash),
-- 4 the hour's models (set), 5 models ever used (set), 6 providers ever used
-- (set), 7 denial burst counter, 8 injection burst counter, 9 last hour seen,
-- 10 baselines (hash)
--
-- ARGV: 1 event time ms, 2 hour number, 3 tokens, 4 spend micros, 5 PII
-- findings, 6 denied (0/1), 7 injection-flagged (0/1), 8 model ("" none),
-- 9 provider ("" none), 10 subject keep s, 11 hour keep s, 12 burst keep s,
-- 13 marker keep s, then the baseline fields to read.
--
-- Reply: {1} for an event already counted and judged; otherwise {replayed,
-- first-seen ms (-1: this event is the first), requests, tokens, spend, pii
-- findings, denials, distinct models this hour, new model (1 new, 0 known,
-- -1 none), new provider (same), denial burst (-1 not denied), injection
-- burst (-1 not flagged), previous last hour (-1 none), then one baseline
-- value per field ("" when unset)}, replayed being 1 for a stored reply.

local seen = redis.call('GET', KEYS[1])
if seen then
  if seen == '1' then return {1} end
  local r = cjson.decode(seen)
  r[1] = 1
  return r
end

local at, hour = ARGV[1], tonumber(ARGV[2])
local subjectKeep, hourKeep, burstKeep = ARGV[10], ARGV[11], ARGV[12]

local first = redis.call('SET', KEYS[2], at, 'NX', 'GET')
redis.call('EXPIRE', KEYS[2], subjectKeep)

local hk = KEYS[3]
local req = redis.call('HINCRBY', hk, 'requests', 1)
local tok = redis.call('HINCRBY', hk, 'tokens', ARGV[3])
local spend = redis.call('HINCRBY', hk, 'spend_micros', ARGV[4])
local pii = redis.call('HINCRBY', hk, 'pii_findings', ARGV[5])
local den = redis.call('HINCRBY', hk, 'denials', ARGV[6])
redis.call('EXPIRE', hk, hourKeep)

local newModel, newProvider = -1, -1
if ARGV[8] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[8])
  redis.call('EXPIRE', KEYS[4], hourKeep)
  newModel = redis.call('SADD', KEYS[5], ARGV[8])
  redis.call('EXPIRE', KEYS[5], subjectKeep)
end
local models = redis.call('SCARD', KEYS[4])
if ARGV[9] ~= '' then
  newProvider = redis.call('SADD', KEYS[6], ARGV[9])
  redis.call('EXPIRE', KEYS[6], subjectKeep)
end

local function burst(key, on)
  if on ~= '1' then return -1 end
  local n = redis.call('INCR', key)
  redis.call('EXPIRE', key, burstKeep)
  return n
end
local denBurst = burst(KEYS[7], ARGV[6])
local injBurst = burst(KEYS[8], ARGV[7])

local prev = redis.call('GET', KEYS[9])
if not prev or tonumber(prev) < hour then
  redis.call('SET', KEYS[9], hour, 'EX', hourKeep)
end

local reply = {0, first and tonumber(first) or -1, req, tok, spend, pii, den, models,
  newModel, newProvider, denBurst, injBurst, prev and tonumber(prev) or -1}
local fields = {}
for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[10], unpack(fields))) do
    reply[#reply + 1] = v or ''
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[13])
return reply
