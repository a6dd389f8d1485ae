import {
  DISTINCT_CAP,
  type HitResult,
  type LedgerEntry,
  type RememberResult,
  type ScoreResult,
  type Store,
  type StoreOp,
  type StoreResult,
  WINDOW_CAP,
} from './store.js'

export interface MemoryStoreOptions {
  /** Most keys (owners: a user or an IP prefix) kept; past it the least recently written are evicted. Defaults to `1_000_000`. */
  maxKeys?: number
  /** How often expired keys are swept, in ms (the timer is `unref`ed). Defaults to `60_000`. */
  sweepInterval?: number
  /** Keys examined per sweep tick, so a sweep never stalls the event loop. Defaults to `20_000`. */
  sweepBatch?: number
}

// One record per key (owner) holding its fields as slots, each slot one object with
// its field name and its own expiry, and arrays created at their exact size: one
// event costs one or two Map lookups instead of one per datum, and an idle user is a
// handful of small objects (the memory target is about 1 KB per tracked user).

/**
 * Members are kept as 30-bit FNV-1a hashes, not strings: comparing small
 * integers is what makes counting members over a window cheap (comparing
 * distinct string objects compares their characters), a hash fits in a tagged
 * small integer (no string retained per hit), and two members in one window
 * colliding (about one chance in a billion per pair) only makes a count
 * one lower.
 */
const memberHash = (member: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < member.length; i++) h = Math.imul(h ^ member.charCodeAt(i), 0x01000193)
  return h & 0x3fffffff
}

/** A hit recorded without a member (the hash of the empty string, as before members were asked for). */
const NO_MEMBER = memberHash('')

/** Hit timestamps (and member hashes) of one sliding window, oldest first. */
class Hits {
  constructor(
    readonly field: string,
    public expires: number,
    public ts: number[],
    public members: number[] | undefined,
  ) {}
}

class Ledger {
  constructor(
    readonly field: string,
    public expires: number,
    public entries: LedgerEntry[],
  ) {}
}

/** A single value is kept as a plain string: most users have one device. */
class RecentList {
  constructor(
    readonly field: string,
    public expires: number,
    public values: string | string[],
  ) {}
}

class Mark {
  constructor(
    readonly field: string,
    public expires: number,
  ) {}
}

type Slot = Hits | Ledger | RecentList | Mark

/** Everything kept under one key. `expires` is the latest of its slots' expiries. */
class Owner {
  constructor(
    public expires: number,
    public slots: Slot[],
  ) {}
}

/** Appends without the spare capacity `push` reserves, while arrays are small. */
const append = <T>(list: T[], item: T): T[] => {
  if (list.length >= 8) {
    list.push(item)
    return list
  }
  const next = new Array<T>(list.length + 1)
  for (let i = 0; i < list.length; i++) next[i] = list[i] as T
  next[list.length] = item
  return next
}

/** The items that pass, in an array of exactly their number (`filter` leaves spare capacity); the same array if all pass. */
const keep = <T>(list: T[], pass: (item: T) => boolean): T[] => {
  let n = 0
  for (const item of list) if (pass(item)) n++
  if (n === list.length) return list
  const kept = new Array<T>(n)
  let i = 0
  for (const item of list) if (pass(item)) kept[i++] = item
  return kept
}

/**
 * At most this many recent hits are counted per window (`WINDOW_CAP` in the Store
 * contract): counts saturate there, which is enough because every threshold is
 * below it. Arrays may grow to twice the cap before being cut back, so a hot key
 * (one IP hammering a login) pays an occasional copy, not one per hit.
 */
const MAX_HITS = WINDOW_CAP

/**
 * The embedded default store. Bounded: keys expire (checked on access, swept
 * incrementally by one `unref`ed timer, never a timer per key) and the number of
 * keys is capped with least-recently-written eviction. Operations run
 * synchronously, so a `run()` batch is trivially atomic in one process.
 */
export class MemoryStore implements Store {
  readonly #owners = new Map<string, Owner>()
  readonly #maxKeys: number
  readonly #sweepBatch: number
  #sweepCursor: IterableIterator<[string, Owner]> | undefined
  #timer: NodeJS.Timeout | undefined
  #evicted = 0
  /** The owner last in the Map's order (most recently written): writing it again needs no re-insertion. */
  #newest: Owner | undefined
  // Consecutive ops (and an event's two batches) mostly address the same key:
  // remember the last lookup. Every path that removes a key from the Map forgets it.
  #lastKey: string | undefined
  #lastOwner: Owner | undefined

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 1_000_000
    this.#sweepBatch = options.sweepBatch ?? 20_000
    this.#timer = setInterval(() => this.sweep(Date.now()), options.sweepInterval ?? 60_000)
    this.#timer.unref()
  }

  /** Keys (owners) currently held, including expired ones not swept yet. */
  get size(): number {
    return this.#owners.size
  }

  /** Keys dropped because the cap was reached. */
  get evicted(): number {
    return this.#evicted
  }

  run(ops: readonly StoreOp[], now: number): Promise<StoreResult[]> {
    try {
      return Promise.resolve(this.runSync(ops, now))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** The same as `run`, without the promise (used by benchmarks and the engine's fast path). */
  runSync(ops: readonly StoreOp[], now: number): StoreResult[] {
    const results: StoreResult[] = new Array(ops.length)
    for (let i = 0; i < ops.length; i++) results[i] = this.#apply(ops[i] as StoreOp, now)
    return results
  }

  /** Drops expired keys and expired fields, at most `sweepBatch` keys examined per call. */
  sweep(now: number): void {
    this.#forgetLookup()
    let cursor = this.#sweepCursor ?? this.#owners.entries()
    for (let examined = 0; examined < this.#sweepBatch; examined++) {
      const next = cursor.next()
      if (next.done) {
        cursor = this.#owners.entries()
        break
      }
      const [key, owner] = next.value
      if (owner.expires <= now) this.#delete(key, owner)
      else owner.slots = keep(owner.slots, (slot) => slot.expires > now)
    }
    this.#sweepCursor = cursor
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    this.#owners.clear()
    this.#sweepCursor = undefined
    this.#newest = undefined
    this.#forgetLookup()
  }

  #forgetLookup(): void {
    this.#lastKey = undefined
    this.#lastOwner = undefined
  }

  #delete(key: string, owner: Owner): void {
    this.#owners.delete(key)
    if (owner === this.#newest) this.#newest = undefined
    if (owner === this.#lastOwner) this.#forgetLookup()
  }

  #owner(key: string, now: number): Owner | undefined {
    let owner: Owner | undefined
    if (key === this.#lastKey) owner = this.#lastOwner
    else {
      owner = this.#owners.get(key)
      this.#lastKey = key
      this.#lastOwner = owner
    }
    if (owner !== undefined && owner.expires <= now) {
      this.#delete(key, owner)
      return undefined
    }
    return owner
  }

  /** The live slot of a field, if any. */
  #slot(owner: Owner | undefined, field: string, now: number): Slot | undefined {
    if (owner === undefined) return undefined
    const { slots } = owner
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i] as Slot
      if (slot.field === field) return slot.expires > now ? slot : undefined
    }
    return undefined
  }

  /**
   * Records a written slot (new or updated) under its key, creating the owner if
   * needed. Writes move the key to the end of the Map's order, so the order is
   * least-recently-written first and eviction takes the first key.
   */
  #put(key: string, owner: Owner | undefined, slot: Slot): Owner {
    if (owner === undefined) {
      owner = new Owner(slot.expires, [slot])
      this.#lastKey = key
      this.#lastOwner = owner
    } else {
      const { slots } = owner
      let i = 0
      while (i < slots.length && (slots[i] as Slot).field !== slot.field) i++
      if (i === slots.length) owner.slots = append(slots, slot)
      else slots[i] = slot
      if (slot.expires > owner.expires) owner.expires = slot.expires
      if (owner === this.#newest) return owner
      this.#owners.delete(key)
    }
    this.#owners.set(key, owner)
    this.#newest = owner
    if (this.#owners.size > this.#maxKeys) {
      const oldest = this.#owners.entries().next().value
      if (oldest !== undefined) {
        this.#delete(oldest[0], oldest[1])
        this.#evicted++
      }
    }
    return owner
  }

  #remove(owner: Owner | undefined, field: string): void {
    if (owner === undefined) return
    const slots = keep(owner.slots, (slot) => slot.field !== field)
    owner.slots = slots
    // An owner with no slot left is dropped by the next sweep or lookup.
    if (slots.length === 0) owner.expires = 0
  }

  #mark(key: string, owner: Owner | undefined, field: string, ttl: number, now: number): Owner | undefined {
    if (this.#slot(owner, field, now) !== undefined) return undefined
    return this.#put(key, owner, new Mark(field, now + ttl))
  }

  #apply(op: StoreOp, now: number): StoreResult {
    switch (op.op) {
      case 'hit':
        return this.#hit(op, now)
      case 'reset':
        this.#remove(this.#owner(op.key, now), op.field)
        return null
      case 'claim':
        return this.#mark(op.key, this.#owner(op.key, now), op.field, op.ttl, now) !== undefined
      case 'marked':
        return this.#slot(this.#owner(op.key, now), op.field, now) !== undefined
      case 'remember':
        return this.#remember(op, now)
      case 'score':
        return this.#score(op, now)
      case 'read': {
        const slot = this.#slot(this.#owner(op.key, now), op.field, now)
        if (!(slot instanceof Ledger)) return []
        return slot.entries.filter((e) => e.at > op.since)
      }
    }
  }

  #hit(op: Extract<StoreOp, { op: 'hit' }>, now: number): HitResult {
    const owner = this.#owner(op.key, now)
    const slot = this.#slot(owner, op.field, now)
    let hits = slot instanceof Hits ? slot : undefined
    const wanted = op.member === undefined ? -1 : memberHash(op.member)
    if (op.add) {
      if (hits === undefined) {
        hits = new Hits(op.field, now + op.ttl, [now], wanted === -1 ? undefined : [wanted])
      } else {
        // Drop what no window can count any more, then record this hit.
        const horizon = now - op.ttl
        let drop = 0
        while (drop < hits.ts.length && (hits.ts[drop] as number) <= horizon) drop++
        if (hits.ts.length - drop >= 2 * MAX_HITS) drop = hits.ts.length - MAX_HITS + 1
        if (drop > 0) {
          hits.ts = hits.ts.slice(drop)
          if (hits.members) hits.members = hits.members.slice(drop)
        }
        if (wanted !== -1 && hits.members === undefined)
          hits.members = new Array<number>(hits.ts.length).fill(NO_MEMBER)
        hits.ts = append(hits.ts, now)
        if (hits.members) hits.members = append(hits.members, wanted === -1 ? NO_MEMBER : wanted)
        hits.expires = now + op.ttl
      }
      this.#put(op.key, owner, hits)
    }
    if (hits === undefined) return { count: 0, distinct: 0, member: 0 }
    const { ts, members } = hits
    // Timestamps are ascending: the window's start is found by binary search.
    let lo = Math.max(0, ts.length - MAX_HITS)
    let hi = ts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((ts[mid] as number) > op.since) hi = mid
      else lo = mid + 1
    }
    const count = ts.length - lo
    // Members are looked at only when the op names one (see the contract).
    if (wanted === -1 || members === undefined) return { count, distinct: 0, member: 0 }
    let member = 0
    // Distinct members, saturating at DISTINCT_CAP: small fixed work even on a hot key.
    const seen: number[] = []
    for (let i = ts.length - 1; i >= lo; i--) {
      const m = members[i] as number
      if (m === wanted) member++
      if (seen.length < DISTINCT_CAP && !seen.includes(m)) seen.push(m)
    }
    return { count, distinct: seen.length, member }
  }

  #remember(op: Extract<StoreOp, { op: 'remember' }>, now: number): RememberResult {
    const owner = this.#owner(op.key, now)
    const slot = this.#slot(owner, op.field, now)
    const list = slot instanceof RecentList ? slot : new RecentList(op.field, 0, [])
    const values = typeof list.values === 'string' ? [list.values] : list.values
    const size = values.length
    const index = values.indexOf(op.value)
    if (index !== 0) {
      // Most recent first, at most `max` distinct values.
      const next = [op.value]
      for (const v of values) if (v !== op.value && next.length < op.max) next.push(v)
      list.values = next.length === 1 ? op.value : next
    }
    list.expires = now + op.ttl
    this.#put(op.key, owner, list)
    return { seen: index !== -1, size }
  }

  #score(op: Extract<StoreOp, { op: 'score' }>, now: number): ScoreResult {
    let owner = this.#owner(op.key, now)
    const slot = this.#slot(owner, op.field, now)
    const ledger = slot instanceof Ledger ? slot : undefined
    let entries = ledger?.entries ?? []
    const added: LedgerEntry[] = []
    let unordered = false
    for (const { entry, once } of op.entries) {
      if (once !== undefined) {
        const marked = this.#mark(op.key, owner, once.field, once.ttl, now)
        if (marked === undefined) continue
        owner = marked
      }
      const last = entries[entries.length - 1]
      if (last !== undefined && entry.at < last.at) unordered = true
      entries = append(entries, entry)
      added.push(entry)
    }
    // Merged entries (a login's earlier failures) can be older than the user's own:
    // keep the ledger oldest first, as reads and trimming rely on it. Sort is stable.
    if (unordered) entries = [...entries].sort((a, b) => a.at - b.at)
    let drop = 0
    while (drop < entries.length && (entries[drop] as LedgerEntry).at <= op.keepSince) drop++
    drop = Math.max(drop, entries.length - op.max)
    if (drop > 0) entries = entries.slice(drop)
    if (ledger) {
      ledger.entries = entries
      ledger.expires = now + op.ttl
      if (added.length > 0) owner = this.#put(op.key, owner, ledger)
      else if (owner !== undefined && ledger.expires > owner.expires) owner.expires = ledger.expires
    } else if (added.length > 0) {
      owner = this.#put(op.key, owner, new Ledger(op.field, now + op.ttl, entries))
    }
    let sum = 0
    for (const e of entries) if (e.at > op.windowSince) sum += e.points
    const crossed: number[] = []
    for (const t of op.thresholds) {
      if (sum <= t.level) continue
      const marked = this.#mark(op.key, owner, t.field, t.ttl, now)
      if (marked === undefined) continue
      owner = marked
      crossed.push(t.level)
    }
    if (crossed.length > 1) crossed.sort((a, b) => a - b)
    return { added, sum, crossed }
  }
}
