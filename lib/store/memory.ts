import type { HitResult, LedgerEntry, RememberResult, ScoreResult, Store, StoreOp, StoreResult } from './store.js'

export interface MemoryStoreOptions {
  /** Most keys kept; past it the least recently written are evicted. Defaults to `1_000_000`. */
  maxKeys?: number
  /** How often expired keys are swept, in ms (the timer is `unref`ed). Defaults to `60_000`. */
  sweepInterval?: number
  /** Keys examined per sweep tick, so a sweep never stalls the event loop. Defaults to `20_000`. */
  sweepBatch?: number
}

/** Hit timestamps (and members) of one sliding window, oldest first. */
class Hits {
  ts: number[] = []
  members: string[] | undefined
}

class Ledger {
  entries: LedgerEntry[] = []
}

class RecentList {
  values: string[] = []
}

type Data = Hits | Ledger | RecentList | true

interface Slot {
  expires: number
  data: Data
}

/** At most this many hits are kept per window: every threshold we use is far below it. */
const MAX_HITS = 1_000

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

  async ledgers(now: number, withinMs: number, limit: number): Promise<string[]> {
    const keys: string[] = []
    for (const [key, slot] of this.#slots) {
      if (!(slot.data instanceof Ledger) || slot.expires <= now) continue
      const last = slot.data.entries[slot.data.entries.length - 1]
      if (last && last.at > now - withinMs) keys.push(key)
      if (keys.length >= limit) break
    }
    return keys
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

  #apply(op: StoreOp, now: number): StoreResult {
    switch (op.op) {
      case 'hit':
        return this.#hit(op, now)
      case 'reset':
        this.#slots.delete(op.key)
        return null
      case 'claim': {
        if (this.#live(op.key, now)) return false
        this.#write(op.key, { expires: now + op.ttl, data: true })
        return true
      }
      case 'marked':
        return this.#live(op.key, now) !== undefined
      case 'remember':
        return this.#remember(op, now)
      case 'score':
        return this.#score(op, now)
      case 'read': {
        const slot = this.#live(op.key, now)
        if (!slot || !(slot.data instanceof Ledger)) return []
        return slot.data.entries.filter((e) => e.at > op.since)
      }
    }
  }

  #hit(op: Extract<StoreOp, { op: 'hit' }>, now: number): HitResult {
    const slot = this.#live(op.key, now)
    let hits = slot?.data instanceof Hits ? slot.data : undefined
    if (op.add) {
      if (!hits) hits = new Hits()
      // Drop what no window can count any more, then record this hit.
      const horizon = now - op.ttl
      let drop = 0
      while (drop < hits.ts.length && (hits.ts[drop] as number) <= horizon) drop++
      if (hits.ts.length - drop >= MAX_HITS) drop = hits.ts.length - MAX_HITS + 1
      if (drop > 0) {
        hits.ts.splice(0, drop)
        hits.members?.splice(0, drop)
      }
      hits.ts.push(now)
      if (op.member !== undefined || hits.members) {
        hits.members ??= new Array<string>(hits.ts.length - 1).fill('')
        hits.members.push(op.member ?? '')
      }
      this.#write(op.key, { expires: now + op.ttl, data: hits })
    }
    if (!hits) return { count: 0, distinct: 0, member: 0 }
    let count = 0
    let member = 0
    const members = hits.members
    const distinct = members ? new Set<string>() : undefined
    for (let i = hits.ts.length - 1; i >= 0 && (hits.ts[i] as number) > op.since; i--) {
      count++
      if (members) {
        const m = members[i] as string
        distinct?.add(m)
        if (m === op.member) member++
      }
    }
    return { count, distinct: distinct ? distinct.size : count > 0 ? 1 : 0, member: members ? member : count }
  }

  #remember(op: Extract<StoreOp, { op: 'remember' }>, now: number): RememberResult {
    const slot = this.#live(op.key, now)
    const list = slot?.data instanceof RecentList ? slot.data : new RecentList()
    const size = list.values.length
    const index = list.values.indexOf(op.value)
    if (index !== -1) list.values.splice(index, 1)
    list.values.unshift(op.value)
    if (list.values.length > op.max) list.values.length = op.max
    this.#write(op.key, { expires: now + op.ttl, data: list })
    return { seen: index !== -1, size }
  }

  #score(op: Extract<StoreOp, { op: 'score' }>, now: number): ScoreResult {
    const slot = this.#live(op.key, now)
    const ledger = slot?.data instanceof Ledger ? slot.data : new Ledger()
    let entries = ledger.entries
    const added: LedgerEntry[] = []
    for (const { entry, once } of op.entries) {
      if (once) {
        if (this.#live(once.key, now)) continue
        this.#write(once.key, { expires: now + once.ttl, data: true })
      }
      entries.push(entry)
      added.push(entry)
    }
    let drop = 0
    while (drop < entries.length && (entries[drop] as LedgerEntry).at <= op.keepSince) drop++
    drop = Math.max(drop, entries.length - op.max)
    if (drop > 0) entries = entries.slice(drop)
    ledger.entries = entries
    if (added.length > 0 || slot) this.#write(op.key, { expires: now + op.ttl, data: ledger })
    let sum = 0
    for (const e of entries) if (e.at > op.windowSince) sum += e.points
    const crossed: number[] = []
    for (const t of op.thresholds) {
      if (sum > t.level && !this.#live(t.key, now)) {
        this.#write(t.key, { expires: now + t.ttl, data: true })
        crossed.push(t.level)
      }
    }
    return { added, sum, crossed }
  }
}
