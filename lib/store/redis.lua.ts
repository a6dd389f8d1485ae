/**
 * The one Lua script behind `RedisStore.run()`: a whole batch executes inside one
 * call, so it is atomic with respect to every other batch, from this process or any
 * other. It mirrors `MemoryStore`'s semantics operation for operation (the
 * contract suite, and a randomised comparison in spec/store.redis.spec.ts, hold
 * both to the same answers).
 *
 * Layout, like the memory store's one record per owner: an owner's windows, marks
 * and recent-value lists live in ONE Redis string, `<prefix>{<key>}`, a MessagePack
 * map from field to value; each ledger (the one datum that grows to hundreds of
 * entries and is only needed when scoring) has its own key,
 * `<prefix>{<key>}:<field>`. A failed login then costs two GETs and two SETs (the
 * IP's record and the user's) instead of one of each per field: inside a script,
 * every redis.call costs about a microsecond and a half, more than the MessagePack
 * decoding it saves. A field holds one kind of datum (as the engine uses them).
 *
 * Calling convention (built by `encode` in lib/store/redis.ts). One call runs several
 * batches (those issued in one turn of the event loop), each whole and in order:
 * - KEYS: the distinct Redis keys of the call (records and ledgers).
 * - ARGV[1]: the program, one flat MessagePack array (flat because decoding nested
 *   arrays costs more than all the rest of a typical op; MessagePack because
 *   cmsgpack.unpack reads it in less than half the time cjson.decode takes for JSON):
 *   `[oldest now, batch count, now, op count,
 *   op..., now, op count, op...]`, each op its code (OP_* in redis.ts) and a fixed
 *   number of arguments, lists being count-prefixed; keys are 1-based KEYS indices,
 *   fields are strings. Ledger entries' JSON and remembered values travel as further
 *   ARGV elements, referenced by index, so their bytes are never re-encoded.
 * - Reply: every op's answer, batch after batch, as one comma-separated list of JSON
 *   values, each op writing a fixed number of them or a count-prefixed list (`decode`
 *   in redis.ts reads them back in the same order).
 *
 * Values: `{expiry, kind, ...}`, `expiry` being the logical expiry (`now + ttl` of
 * the op that last wrote the field), compared with the batch's `now`: the caller's
 * clock decides what is live, exactly as in the memory store. Values are flat
 * arrays (one table each, the cheapest to build, pack and unpack): kind 1 hits
 * `{e, 1, tracked, ts1, member1, ts2, member2, ...}` (oldest first), 2 mark `{e, 2}`,
 * 4 recent values `{e, 4, v1, count1, v2, count2, ...}` (runs of the last values written,
 * most recent first; kind 3, the earlier list of distinct values, is read as runs of one); a ledger key holds
 * `{e, at1, points1, json1, at2, ...}` (oldest first). The Redis TTL (PXAT) is only
 * the garbage collector: the latest field expiry of a record (or the ledger's expiry),
 * shifted by how far the server's clock is ahead of the call's oldest `now` if it is,
 * so it never removes a value before its logical expiry whichever clock is ahead.
 * Numbers stay exact: MessagePack keeps doubles both ways, and the one non-integer of
 * the reply (a score's sum) is printed with %.17g.
 */
export const BATCH_SCRIPT: string = `
local prog = cmsgpack.unpack(ARGV[1])
-- The oldest now of the call's batches: records are pruned and their TTLs set with it, so
-- nothing a batch of this call still counts as live is dropped.
local oldest = prog[1]
-- The now of the batch being run.
local now = oldest
local CAP, DISTINCT_CAP, NO_MEMBER = 128, 16, 18652613
local pack, unpack, call, floor = cmsgpack.pack, cmsgpack.unpack, redis.call, math.floor

local shift, server
-- The PXAT of key k for a logical expiry: shifted by how far the server's clock is ahead of
-- this call's, and never earlier than the key's present expiry, which another writer may
-- have set on its own clock (a hub scoring a backlog at the events' times, a process whose
-- clock is behind): shortened by a writer whose clock is ahead, a value would be gone
-- before the expiry its writer counts on, and a once-per-window mark claimed twice.
local function expireAt(k, expiry)
  if not shift then
    local t = call('TIME')
    server = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
    shift = 0
    if server > oldest then shift = server - oldest end
  end
  local at = floor(expiry + shift) + 1
  local left = call('PTTL', KEYS[k])
  if left > 0 and server + left > at then at = server + left end
  return at
end

-- Owner records by KEYS index, decoded once per batch and written once at its end.
local records, dirty, changed = {}, {}, {}
local function record(k)
  local r = records[k]
  if r == nil then
    local raw = call('GET', KEYS[k])
    if raw then r = unpack(raw) else r = {} end
    records[k] = r
  end
  return r
end
local function field(k, f)
  local v = record(k)[f]
  if v and v[1] > now then return v end
  return nil
end
-- A record changed in this call: written once, at the end.
local function touch(k)
  if not changed[k] then
    changed[k] = true
    dirty[#dirty + 1] = k
  end
end
local function put(k, f, v, ttl)
  v[1] = now + ttl
  records[k][f] = v
  touch(k)
end
local function claim(k, f, ttl)
  if field(k, f) then return false end
  put(k, f, {0, 2}, ttl)
  return true
end

-- The answers, as a flat list of JSON values (see decode in redis.ts).
local out, o = {}, 0

local function hit(k, f, add, since, ttl, wanted)
  local v = field(k, f)
  if v and v[2] ~= 1 then v = nil end
  if add == 1 then
    local m = wanted
    if m < 0 then m = NO_MEMBER end
    local expiry = 0
    if not v then
      local tracked = 0
      if wanted >= 0 then tracked = 1 end
      v = {0, 1, tracked, now, m}
    else
      expiry = v[1]
      local len = #v
      local n = (len - 3) / 2
      -- Drop what no window can count any more, and keep the most recent CAP hits, plus this
      -- one (the memory store keeps up to twice as many, but never counts past CAP either;
      -- CAP and not CAP - 1 before a hit that may be late, so both count the CAP newest).
      local horizon = now - ttl
      local drop = 0
      while drop < n and v[4 + 2 * drop] <= horizon do drop = drop + 1 end
      if n - drop > CAP then drop = n - CAP end
      if drop > 0 then
        local kept = {0, 1, v[3]}
        for i = 4 + 2 * drop, len do kept[i - 2 * drop] = v[i] end
        v = kept
        len = #v
      end
      -- A late hit goes to its place in time (as in the memory store): the window stays ascending.
      local i = len + 1
      while i > 4 and v[i - 2] > now do
        v[i], v[i + 1] = v[i - 2], v[i - 1]
        i = i - 2
      end
      v[i], v[i + 1] = now, m
      if wanted >= 0 then v[3] = 1 end
    end
    put(k, f, v, ttl)
    -- A late hit does not shorten the window's life.
    if v[1] < expiry then v[1] = expiry end
  end
  if not v then
    out[o + 1], out[o + 2], out[o + 3] = 0, 0, 0
    o = o + 3
    return
  end
  local n = (#v - 3) / 2
  -- The memory store's binary search, over the last CAP hits (0-based positions).
  local lo, hi = n - CAP, n
  if lo < 0 then lo = 0 end
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if v[4 + 2 * mid] > since then hi = mid else lo = mid + 1 end
  end
  local count = n - lo
  local member, distinct = 0, 0
  if wanted >= 0 and v[3] == 1 then
    local seen = {}
    for i = 3 + 2 * n, 5 + 2 * lo, -2 do
      local x = v[i]
      if x == wanted then member = member + 1 end
      if distinct < DISTINCT_CAP and not seen[x] then
        seen[x] = true
        distinct = distinct + 1
      end
    end
  end
  out[o + 1], out[o + 2], out[o + 3] = count, distinct, member
  o = o + 3
end

local function remember(k, f, value, max, ttl)
  local v = field(k, f)
  if max < 1 then max = 1 end
  local size, seen = 0, false
  -- The new list: this value first, then the runs before it (the first merged if the same value).
  local nx = {0, 4, value, 1}
  if v and v[2] == 3 then
    -- The earlier layout (distinct values, most recent first): each read as one write.
    local runs = {v[1], 4}
    for i = 3, #v do
      runs[#runs + 1] = v[i]
      runs[#runs + 1] = 1
    end
    v = runs
  end
  if v and v[2] == 4 then
    for i = 3, #v, 2 do
      local x, c = v[i], v[i + 1]
      if x == value then seen = true end
      size = size + c
      if i == 3 and x == value then
        nx[4] = c + 1
      else
        nx[#nx + 1] = x
        nx[#nx + 1] = c
      end
    end
  end
  -- Forget the oldest beyond max.
  local over = size + 1 - max
  while over > 0 do
    local n = #nx
    local c = nx[n]
    if c > over then
      nx[n] = c - over
      over = 0
    else
      nx[n] = nil
      nx[n - 1] = nil
      over = over - c
    end
  end
  put(k, f, nx, ttl)
  if seen then out[o + 1] = 1 else out[o + 1] = 0 end
  out[o + 2] = size
  o = o + 2
end

local ledgers = {}
local function ledger(l)
  local v = ledgers[l]
  if v == nil then
    local raw = call('GET', KEYS[l])
    if raw then v = unpack(raw) else v = false end
    ledgers[l] = v
  end
  if v and v[1] > now then return v end
  return nil
end

-- score: reads its arguments from the program at position p; returns the next position.
local function score(p)
  local k, l, keepSince, max, ttl, windowSince = prog[p], prog[p + 1], prog[p + 2], prog[p + 3], prog[p + 4], prog[p + 5]
  local old = ledger(l)
  local v = old or {0}
  local len = #v
  local count = prog[p + 6]
  p = p + 7
  local added, nAdded, unordered = {}, 0, false
  for i = 1, count do
    -- at, points, ARGV index of the entry's JSON, its once-mark's field or 0, the mark's ttl
    local at, once = prog[p], prog[p + 3]
    if once == 0 or claim(k, once, prog[p + 4]) then
      if len > 1 and at < v[len - 2] then unordered = true end
      v[len + 1], v[len + 2], v[len + 3] = at, prog[p + 1], ARGV[prog[p + 2]]
      len = len + 3
      nAdded = nAdded + 1
      added[nAdded] = i - 1
    end
    p = p + 5
  end
  local n = (len - 1) / 3
  if unordered then
    -- Merged entries can be older than the ledger's own: a stable insertion sort by
    -- time gives the order of the memory store's stable sort.
    for i = 2, n do
      local b = 3 * i - 1
      local a, pts, d = v[b], v[b + 1], v[b + 2]
      local j = b - 3
      while j >= 2 and v[j] > a do
        v[j + 3], v[j + 4], v[j + 5] = v[j], v[j + 1], v[j + 2]
        j = j - 3
      end
      v[j + 3], v[j + 4], v[j + 5] = a, pts, d
    end
  end
  local drop = 0
  while drop < n and v[2 + 3 * drop] <= keepSince do drop = drop + 1 end
  if n - max > drop then drop = n - max end
  if drop > 0 then
    local kept = {0}
    for i = 2 + 3 * drop, len do kept[i - 3 * drop] = v[i] end
    v = kept
    len = #v
    n = n - drop
  end
  if old or nAdded > 0 then
    v[1] = now + ttl
    ledgers[l] = v
    call('SET', KEYS[l], pack(v), 'PXAT', expireAt(l, now + ttl))
  end
  -- Summed in ledger order, as the memory store does: the same doubles, the same sum.
  local sum = 0
  for i = 2, len, 3 do
    if v[i] > windowSince then sum = sum + v[i + 1] end
  end
  out[o + 1] = nAdded
  o = o + 1
  for i = 1, nAdded do out[o + i] = added[i] end
  o = o + nAdded + 1
  out[o] = string.format('%.17g', sum)
  local thresholds = prog[p]
  p = p + 1
  local crossedAt = o + 1
  local crossed = 0
  for i = 1, thresholds do
    if sum > prog[p] and claim(k, prog[p + 1], prog[p + 2]) then
      crossed = crossed + 1
      out[crossedAt + crossed] = i - 1
    end
    p = p + 3
  end
  out[crossedAt] = crossed
  o = crossedAt + crossed
  return p
end

local function read(l, since)
  local v = ledger(l)
  local start = o + 1
  o = start
  if v then
    for i = 2, #v, 3 do
      if v[i] > since then
        o = o + 1
        out[o] = v[i + 2]
      end
    end
  end
  out[start] = o - start
end

-- Writes a value with the expiry it already has (put sets a new one).
local function keep(k, f, v)
  records[k][f] = v
  touch(k)
end

-- Moves ledger la into ledger lb: entries merged in time order, lb's first at equal times
-- (the memory store's merge), the later expiry kept; la is deleted. Not trimmed: the score
-- that follows in the engine's batch trims it, as in the memory store.
local function moveLedger(la, lb)
  local v = ledger(la)
  if not v then return end
  call('DEL', KEYS[la])
  ledgers[la] = false
  local w = ledger(lb)
  local m = v
  if w then
    local na, nb = (#w - 1) / 3, (#v - 1) / 3
    m = {w[1]}
    if v[1] > w[1] then m[1] = v[1] end
    local i, j, len = 0, 0, 1
    for _ = 1, na + nb do
      local x
      if j >= nb or (i < na and w[2 + 3 * i] <= v[2 + 3 * j]) then
        x = 2 + 3 * i
        m[len + 1], m[len + 2], m[len + 3] = w[x], w[x + 1], w[x + 2]
        i = i + 1
      else
        x = 2 + 3 * j
        m[len + 1], m[len + 2], m[len + 3] = v[x], v[x + 1], v[x + 2]
        j = j + 1
      end
      len = len + 3
    end
  end
  ledgers[lb] = m
  call('SET', KEYS[lb], pack(m), 'PXAT', expireAt(lb, m[1]))
end

-- move: a window, a mark or a ledger from owner a to owner b (see the Store contract). A
-- field that is not in a's record may be a ledger (la, lb: the ledgers' KEYS indices), as in reset.
local function move(a, f, b, la, lb)
  if a == b then return end
  if record(a)[f] == nil then return moveLedger(la, lb) end
  local v = field(a, f)
  if not v or (v[2] ~= 1 and v[2] ~= 2) then return end
  record(a)[f] = nil
  touch(a)
  local w = field(b, f)
  if w and w[2] ~= v[2] then w = nil end
  if v[2] == 2 then
    if not w or v[1] > w[1] then keep(b, f, {v[1], 2}) end
    return
  end
  if not w then
    -- At most CAP hits, as a window written by hit keeps.
    local n = (#v - 3) / 2
    if n > CAP then
      local kept = {v[1], 1, v[3]}
      for i = 4 + 2 * (n - CAP), #v do kept[#kept + 1] = v[i] end
      v = kept
    end
    keep(b, f, v)
    return
  end
  -- Merged from the newest backwards, so the oldest are the ones past the cap.
  local na, nb = (#v - 3) / 2, (#w - 3) / 2
  local total = na + nb
  if total > CAP then total = CAP end
  local tracked = v[3]
  if w[3] == 1 then tracked = 1 end
  local expiry = v[1]
  if w[1] > expiry then expiry = w[1] end
  local m = {expiry, 1, tracked}
  local i, j = na, nb
  for k = total, 1, -1 do
    if j < 1 or (i >= 1 and v[2 + 2 * i] > w[2 + 2 * j]) then
      m[2 + 2 * k], m[3 + 2 * k] = v[2 + 2 * i], v[3 + 2 * i]
      i = i - 1
    else
      m[2 + 2 * k], m[3 + 2 * k] = w[2 + 2 * j], w[3 + 2 * j]
      j = j - 1
    end
  end
  keep(b, f, m)
end

local function reset(k, f, l)
  local r = record(k)
  if r[f] ~= nil then
    r[f] = nil
    touch(k)
  else
    -- Not in the record: it may be a ledger.
    call('DEL', KEYS[l])
    ledgers[l] = false
  end
end

local p = 3
for _ = 1, prog[2] do
  now = prog[p]
  local count = prog[p + 1]
  p = p + 2
  for _ = 1, count do
    local code = prog[p]
    if code == 1 then
      hit(prog[p + 1], prog[p + 2], prog[p + 3], prog[p + 4], prog[p + 5], prog[p + 6])
      p = p + 7
    elseif code == 4 then
      o = o + 1
      if field(prog[p + 1], prog[p + 2]) then out[o] = 1 else out[o] = 0 end
      p = p + 3
    elseif code == 3 then
      o = o + 1
      if claim(prog[p + 1], prog[p + 2], prog[p + 3]) then out[o] = 1 else out[o] = 0 end
      p = p + 4
    elseif code == 6 then
      p = score(p + 1)
    elseif code == 5 then
      remember(prog[p + 1], prog[p + 2], ARGV[prog[p + 3]], prog[p + 4], prog[p + 5])
      p = p + 6
    elseif code == 2 then
      reset(prog[p + 1], prog[p + 2], prog[p + 3])
      p = p + 4
    elseif code == 7 then
      read(prog[p + 1], prog[p + 2])
      p = p + 3
    elseif code == 8 then
      move(prog[p + 1], prog[p + 2], prog[p + 3], prog[p + 4], prog[p + 5])
      p = p + 6
    else
      return redis.error_reply('sqreen-auth: unknown op code ' .. tostring(code))
    end
  end
end

-- Write each changed record once, without its expired fields; its TTL is its latest field's.
for i = 1, #dirty do
  local k = dirty[i]
  local r = records[k]
  local latest = nil
  for f, v in pairs(r) do
    if v[1] > oldest then
      if latest == nil or v[1] > latest then latest = v[1] end
    else
      r[f] = nil
    end
  end
  if latest then
    call('SET', KEYS[k], pack(r), 'PXAT', expireAt(k, latest))
  else
    call('DEL', KEYS[k])
  end
end
return table.concat(out, ',', 1, o)
`
