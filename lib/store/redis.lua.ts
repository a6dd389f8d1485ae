/**
 * The one Lua script behind `RedisStore.run()`: a whole batch executes inside it,
 * so it is atomic with respect to every other batch, from this process or any
 * other. It mirrors `MemoryStore`'s semantics operation for operation (the
 * contract suite checks both against the same expectations).
 *
 * Calling convention (built by lib/store/redis.ts):
 * - KEYS: the distinct Redis keys the batch touches, each `<prefix>{<key>}:<field>`.
 * - ARGV[1]: the program, JSON of numbers only: `[now, op, op, ...]`, each op an
 *   array whose first element is its code and whose key references are 1-based
 *   KEYS indices (see OP_* in redis.ts). Strings (ledger entries' JSON, remembered
 *   values) travel as further ARGV elements, referenced by index, so their bytes
 *   are never re-encoded.
 * - Reply: one JSON text, an array with each op's answer (see `decode` in redis.ts).
 *
 * Every value is a MessagePack array `{expiry, kind, ...}`. `expiry` is the
 * logical expiry (`now + ttl` of the op that last wrote it), compared with the
 * batch's `now`: the caller's clock decides what is live, exactly as in the
 * memory store. The Redis TTL (PXAT) is only the garbage collector, set to
 * `max(now, server time) + ttl` so it never removes a value before its logical
 * expiry whichever of the two clocks is ahead.
 *
 * Kinds: 1 hits `{e, 1, ts[], members[], tracked}`, 2 mark `{e, 2}`,
 * 3 recent values `{e, 3, values[]}` (most recent first),
 * 4 ledger `{e, 4, at[], points[], json[]}` (oldest first).
 * Numbers are exact: MessagePack keeps doubles, cjson.decode reads them with strtod,
 * and the only non-integer in the reply (a score's sum) is printed with %.17g.
 */
export const BATCH_SCRIPT = `
local prog = cjson.decode(ARGV[1])
local now = prog[1]
local HITS, MARK, RECENT, LEDGER = 1, 2, 3, 4
local CAP, DISTINCT_CAP, NO_MEMBER = 128, 16, 18652613
-- Decoded values by KEYS index: an op reading what an earlier op of the batch wrote
-- does not GET and unpack it again.
local cache = {}
local base

local function live(k)
  local v = cache[k]
  if v == nil then
    local raw = redis.call('GET', KEYS[k])
    if raw then v = cmsgpack.unpack(raw) else v = false end
    cache[k] = v
  end
  if v and v[1] > now then return v end
  return nil
end

local function save(k, v, ttl)
  if not base then
    local t = redis.call('TIME')
    local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if server > now then base = server else base = now end
  end
  v[1] = now + ttl
  cache[k] = v
  redis.call('SET', KEYS[k], cmsgpack.pack(v), 'PXAT', math.floor(base + ttl) + 1)
end

local function hit(op)
  local k, add, since, ttl, wanted = op[2], op[3], op[4], op[5], op[6]
  local v = live(k)
  if v and v[2] ~= HITS then v = nil end
  if add == 1 then
    local m = wanted
    if m < 0 then m = NO_MEMBER end
    if not v then
      local tracked = 0
      if wanted >= 0 then tracked = 1 end
      v = {0, HITS, {now}, {m}, tracked}
    else
      local ts, ms = v[3], v[4]
      local n = #ts
      -- Drop what no window can count any more, and keep the most recent CAP hits.
      local horizon = now - ttl
      local drop = 0
      while drop < n and ts[drop + 1] <= horizon do drop = drop + 1 end
      if n - drop >= CAP then drop = n - CAP + 1 end
      if drop > 0 then
        local t2, m2 = {}, {}
        for i = drop + 1, n do
          t2[i - drop] = ts[i]
          m2[i - drop] = ms[i]
        end
        ts, ms = t2, m2
        v[3], v[4] = ts, ms
      end
      ts[#ts + 1] = now
      ms[#ms + 1] = m
      if wanted >= 0 then v[5] = 1 end
    end
    save(k, v, ttl)
  end
  if not v then return '[0,0,0]' end
  local ts = v[3]
  local n = #ts
  -- The same binary search as the memory store, over the last CAP hits (0-based bounds).
  local lo, hi = n - CAP, n
  if lo < 0 then lo = 0 end
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if ts[mid + 1] > since then hi = mid else lo = mid + 1 end
  end
  local count = n - lo
  if wanted < 0 or v[5] == 0 then return '[' .. count .. ',0,0]' end
  local ms = v[4]
  local member, seen, distinct = 0, {}, 0
  for i = n, lo + 1, -1 do
    local x = ms[i]
    if x == wanted then member = member + 1 end
    if distinct < DISTINCT_CAP and not seen[x] then
      seen[x] = true
      distinct = distinct + 1
    end
  end
  return '[' .. count .. ',' .. distinct .. ',' .. member .. ']'
end

local function claim(k, ttl)
  if live(k) then return false end
  save(k, {0, MARK}, ttl)
  return true
end

local function remember(op)
  local k, value, max, ttl = op[2], ARGV[op[3]], op[4], op[5]
  local v = live(k)
  local values = {}
  if v and v[2] == RECENT then values = v[3] end
  local size = #values
  local index = 0
  for i = 1, size do
    if values[i] == value then
      index = i
      break
    end
  end
  if index ~= 1 then
    local nx = {value}
    for i = 1, size do
      local x = values[i]
      if x ~= value and #nx < max then nx[#nx + 1] = x end
    end
    values = nx
  end
  save(k, {0, RECENT, values}, ttl)
  local seen = 0
  if index > 0 then seen = 1 end
  return '[' .. seen .. ',' .. size .. ']'
end

local function score(op)
  local k, keepSince, max, ttl, windowSince, entries, thresholds = op[2], op[3], op[4], op[5], op[6], op[7], op[8]
  local v = live(k)
  local ledger = nil
  if v and v[2] == LEDGER then ledger = v end
  local ats, pts, docs = {}, {}, {}
  if ledger then ats, pts, docs = ledger[3], ledger[4], ledger[5] end
  local added = {}
  local unordered = false
  for i = 1, #entries do
    -- {at, points, ARGV index of the entry's JSON, KEYS index of its once-mark or 0, the mark's ttl}
    local e = entries[i]
    if e[4] == 0 or claim(e[4], e[5]) then
      local n = #ats
      if n > 0 and e[1] < ats[n] then unordered = true end
      ats[n + 1] = e[1]
      pts[n + 1] = e[2]
      docs[n + 1] = ARGV[e[3]]
      added[#added + 1] = i - 1
    end
  end
  if unordered then
    -- Merged entries can be older than the ledger's own: a stable insertion sort by time
    -- (the memory store's stable sort gives the same order).
    for i = 2, #ats do
      local a, p, d = ats[i], pts[i], docs[i]
      local j = i - 1
      while j >= 1 and ats[j] > a do
        ats[j + 1], pts[j + 1], docs[j + 1] = ats[j], pts[j], docs[j]
        j = j - 1
      end
      ats[j + 1], pts[j + 1], docs[j + 1] = a, p, d
    end
  end
  local n = #ats
  local drop = 0
  while drop < n and ats[drop + 1] <= keepSince do drop = drop + 1 end
  if n - max > drop then drop = n - max end
  if drop > 0 then
    local a2, p2, d2 = {}, {}, {}
    for i = drop + 1, n do
      a2[i - drop] = ats[i]
      p2[i - drop] = pts[i]
      d2[i - drop] = docs[i]
    end
    ats, pts, docs = a2, p2, d2
  end
  if ledger or #added > 0 then save(k, {0, LEDGER, ats, pts, docs}, ttl) end
  -- Summed in ledger order, as the memory store does: the same doubles, the same result.
  local sum = 0
  for i = 1, #ats do
    if ats[i] > windowSince then sum = sum + pts[i] end
  end
  local crossed = {}
  for i = 1, #thresholds do
    local t = thresholds[i]
    if sum > t[1] and claim(t[2], t[3]) then crossed[#crossed + 1] = i - 1 end
  end
  return '[[' .. table.concat(added, ',') .. '],' .. string.format('%.17g', sum) .. ',[' .. table.concat(crossed, ',') .. ']]'
end

local function read(op)
  local v = live(op[2])
  if not (v and v[2] == LEDGER) then return '[]' end
  local ats, docs, since = v[3], v[5], op[3]
  local out = {}
  for i = 1, #ats do
    if ats[i] > since then out[#out + 1] = docs[i] end
  end
  return '[' .. table.concat(out, ',') .. ']'
end

local out = {}
for i = 2, #prog do
  local op = prog[i]
  local code = op[1]
  local r
  if code == 1 then
    r = hit(op)
  elseif code == 2 then
    redis.call('DEL', KEYS[op[2]])
    cache[op[2]] = false
    r = 'null'
  elseif code == 3 then
    if claim(op[2], op[3]) then r = '1' else r = '0' end
  elseif code == 4 then
    if live(op[2]) then r = '1' else r = '0' end
  elseif code == 5 then
    r = remember(op)
  elseif code == 6 then
    r = score(op)
  elseif code == 7 then
    r = read(op)
  else
    return redis.error_reply('sqreen-auth: unknown op code ' .. tostring(code))
  end
  out[i - 1] = r
end
return '[' .. table.concat(out, ',') .. ']'
`
