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
  /** Most keys kept; past it the least recently written are evicted. Defaults to `1_000_000`. */
  maxKeys?: number
  /** How often expired keys are swept, in ms (the timer is `unref`ed). Defaults to `60_000`. */
  sweepInterval?: number
  /** Keys examined per sweep tick, so a sweep never stalls the event loop. Defaults to `20_000`. */
  sweepBatch?: number
}

// Each slot is one object holding its own expiry, and arrays are created at their
// exact size: an idle user is a handful of small keys, and the memory target is
// about 1 KB per tracked user.

/** Hit timestamps (and members) of one sliding window, oldest first. */
class Hits {
  constructor(
    public expires: number,
    public ts: number[],
    public members: string[] | undefined,
  ) {}
}

class Ledger {
  constructor(
    public expires: number,
    public entries: LedgerEntry[],
  ) {}
}

/** A single value is kept as a plain string: most users have one device. */
class RecentList {
  constructor(
    public expires: number,
    public values: string | string[],
  ) {}
}

class Mark {
  constructor(public expires: number) {}
}

type Slot = Hits | Ledger | RecentList | Mark

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
  readonly #slots = new Map<string, Slot>()
  readonly #maxKeys: number
  readonly #sweepBatch: number
  #sweepCursor: IterableIterator<[string, Slot]> | undefined
  #timer: NodeJS.Timeout | undefined
  #evicted = 0

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 1_000_000
    this.#sweepBatch = options.sweepBatch ?? 20_000
    this.#timer = setInterval(() => this.sweep(Date.now()), options.sweepInterval ?? 60_000)
    this.#timer.unref()
  }

  /** Keys currently held (including expired ones not swept yet). */
  get size(): number {
    return this.#slots.size
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

  /** Drops expired keys, at most `sweepBatch` examined per call. */
  sweep(now: number): void {
    let cursor = this.#sweepCursor ?? this.#slots.entries()
    for (let examined = 0; examined < this.#sweepBatch; examined++) {
      const next = cursor.next()
      if (next.done) {
        cursor = this.#slots.entries()
        break
      }
      const [key, slot] = next.value
      if (slot.expires <= now) this.#slots.delete(key)
    }
    this.#sweepCursor = cursor
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    this.#slots.clear()
    this.#sweepCursor = undefined
  }

  #live(key: string, now: number): Slot | undefined {
    const slot = this.#slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expires <= now) {
      this.#slots.delete(key)
      return undefined
    }
    return slot
  }

  /** Writes re-insert the key so the Map's order is least-recently-written first. */
  #write(key: string, slot: Slot): void {
    this.#slots.delete(key)
    this.#slots.set(key, slot)
    if (this.#slots.size > this.#maxKeys) {
      const oldest = this.#slots.keys().next().value
      if (oldest !== undefined) {
        this.#slots.delete(oldest)
        this.#evicted++
      }
    }
  }

  #mark(key: string, ttl: number, now: number): boolean {
    if (this.#live(key, now)) return false
    this.#write(key, new Mark(now + ttl))
    return true
  }

  #apply(op: StoreOp, now: number): StoreResult {
    switch (op.op) {
      case 'hit':
        return this.#hit(op, now)
      case 'reset':
        this.#slots.delete(op.key)
        return null
      case 'claim':
        return this.#mark(op.key, op.ttl, now)
      case 'marked':
        return this.#live(op.key, now) !== undefined
      case 'remember':
        return this.#remember(op, now)
      case 'score':
        return this.#score(op, now)
      case 'read': {
        const slot = this.#live(op.key, now)
        if (!(slot instanceof Ledger)) return []
        return slot.entries.filter((e) => e.at > op.since)
      }
    }
  }

  #hit(op: Extract<StoreOp, { op: 'hit' }>, now: number): HitResult {
    const slot = this.#live(op.key, now)
    let hits = slot instanceof Hits ? slot : undefined
    if (op.add) {
      if (hits === undefined) {
        hits = new Hits(now + op.ttl, [now], op.member === undefined ? undefined : [op.member])
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
        if (op.member !== undefined && hits.members === undefined)
          hits.members = new Array<string>(hits.ts.length).fill('')
        hits.ts = append(hits.ts, now)
        if (hits.members) hits.members = append(hits.members, op.member ?? '')
        hits.expires = now + op.ttl
      }
      this.#write(op.key, hits)
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
    if (op.member === undefined || members === undefined) return { count, distinct: 0, member: 0 }
    let member = 0
    // Distinct members, saturating at DISTINCT_CAP: small fixed work even on a hot key.
    const seen: string[] = []
    for (let i = ts.length - 1; i >= lo; i--) {
      const m = members[i] as string
      if (m === op.member) member++
      if (seen.length < DISTINCT_CAP && !seen.includes(m)) seen.push(m)
    }
    return { count, distinct: seen.length, member }
  }

  #remember(op: Extract<StoreOp, { op: 'remember' }>, now: number): RememberResult {
    const slot = this.#live(op.key, now)
    const list = slot instanceof RecentList ? slot : new RecentList(0, [])
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
    this.#write(op.key, list)
    return { seen: index !== -1, size }
  }

  #score(op: Extract<StoreOp, { op: 'score' }>, now: number): ScoreResult {
    const slot = this.#live(op.key, now)
    const ledger = slot instanceof Ledger ? slot : undefined
    let entries = ledger?.entries ?? []
    const added: LedgerEntry[] = []
    let unordered = false
    for (const { entry, once } of op.entries) {
      if (once !== undefined && !this.#mark(once.key, once.ttl, now)) continue
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
      if (added.length > 0) this.#write(op.key, ledger)
    } else if (added.length > 0) {
      this.#write(op.key, new Ledger(now + op.ttl, entries))
    }
    let sum = 0
    for (const e of entries) if (e.at > op.windowSince) sum += e.points
    const crossed: number[] = []
    for (const t of op.thresholds) if (sum > t.level && this.#mark(t.key, t.ttl, now)) crossed.push(t.level)
    if (crossed.length > 1) crossed.sort((a, b) => a - b)
    return { added, sum, crossed }
  }
}
