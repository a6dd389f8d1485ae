import { getHeapStatistics } from 'node:v8'
import { ClockHand } from '../clock-hand.js'
import { checkOptions, SqreenAuthError } from '../errors.js'
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
  /** Most keys (owners: a user or an IP prefix) kept; past it, keys not written recently are evicted first. Defaults to a quarter of the heap's limit at 2 kB a key, from 10,000 to 1,000,000 (see `defaultMaxKeys`). */
  maxKeys?: number
  /** How often expired keys are swept, in ms (the timer is `unref`ed). Defaults to `60_000`. */
  sweepInterval?: number
  /** Keys examined per sweep tick, so a sweep never stalls the event loop. Defaults to `20_000`. */
  sweepBatch?: number
}

// Layout, chosen for the garbage collector as much as for lookups. One record per key
// (owner) holds its fields as slots, so one event costs one or two Map lookups. A write
// updates what is already there: windows and ledgers grow in place (`push`), a reset or
// an expiry leaves the slot to be reused, and the Map's order is changed only when a key
// is evicted. What an event writes is then mostly numbers stored into arrays that exist,
// not new objects: new objects that live are what young-generation collections copy,
// and at 200,000 events a second that copying was a third of the engine's time. Arrays
// grown by `push` keep spare capacity; the sweep copies them to their exact size, so an
// idle user is a handful of small objects (the target is about 1 KB per tracked user).

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

/** Hit timestamps (and member hashes) of one sliding window, oldest first: the first `n` items of each array (see `storeNumber`). */
class Hits {
  constructor(
    readonly field: string,
    public expires: number,
    public n: number,
    public ts: number[],
    public members: number[] | undefined,
  ) {}
}

/** What a ledger entry says besides its time; entries without evidence share one per detection and points. */
interface Body {
  readonly detection: string
  readonly points: number
  readonly evidence: LedgerEntry['evidence']
}

/**
 * A ledger as two parallel arrays, oldest first: the times in an array of
 * doubles (a time kept in an object would be one more boxed number per entry)
 * and what each entry says; the first `n` items of each (see `storeNumber`).
 * (The points in a third array, so that summing a window reads no body, gained
 * about 1% under attack and cost 70 B per idle user: left out.)
 */
class Ledger {
  constructor(
    readonly field: string,
    public expires: number,
    public n: number,
    public at: number[],
    public bodies: Body[],
  ) {}
}

/** What a ledger's unused room holds, so that dropped entries are not kept alive. */
const NO_BODY: Body = { detection: '', points: 0, evidence: undefined }

/**
 * The last values written (at most the op's `max`, repeats counted), most recent first,
 * as runs: `values[i]` written `counts[i]` times in a row. A single run is kept as a plain
 * string and a number: most users sign in with one device.
 */
class RecentList {
  constructor(
    readonly field: string,
    public expires: number,
    public values: string | string[],
    public counts: number | number[],
  ) {}
}

class Mark {
  constructor(
    readonly field: string,
    public expires: number,
  ) {}
}

type Slot = Hits | Ledger | RecentList | Mark

/**
 * Everything kept under one key. `expires` is the latest of its slots' expiries.
 * `rewritten` is the eviction's second chance: set when an existing key is written
 * again, cleared when eviction passes over it.
 */
class Owner {
  rewritten = false
  constructor(
    public expires: number,
    public slots: Slot[],
  ) {}
}

/**
 * About the most a key holds (its owner record and fields): an idle tracked user about
 * 945 B, a failing login with its window and ledger entry 960 - 1,180 B, and 1.6 kB when the
 * login is 256 characters outside Latin-1 (two bytes each, in the key and the identity).
 */
const BYTES_PER_KEY = 2_000

/** The share of the heap's limit the store may fill by default. */
const HEAP_SHARE = 0.25

/**
 * The default `maxKeys`: a quarter of the heap's limit at 2 kB a key, between 10,000
 * and 1,000,000. Failing logins on made-up names make one key each and cost an anonymous
 * client nothing: at a fixed 1,000,000 (about 1.1 GB) they could grow the heap past a
 * small container's limit (Node's heap limit follows the memory it is given: 304 MB under
 * `--max-old-space-size=256`), and the application died of it. Sized to the heap, the
 * store evicts instead: 1,000,000 keys from an 8 GB limit up, 40,000 under 256 MB.
 */
export const defaultMaxKeys = (): number =>
  Math.max(10_000, Math.min(1_000_000, Math.floor((getHeapStatistics().heap_size_limit * HEAP_SHARE) / BYTES_PER_KEY)))

/** A key written again since eviction last passed over it is kept, once (see `ClockHand`). */
const takeSecondChance = (owner: Owner): boolean => {
  const rewritten = owner.rewritten
  owner.rewritten = false
  return rewritten
}

/** Appends a slot without the spare capacity `push` reserves (an owner has a handful). */
const append = <T>(list: T[], item: T): T[] => {
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
 * Windows and ledgers keep their own count of items (`n`) and room for more in
 * their arrays: `storeNumber` writes item `n`, doubling the room by an exact-size copy
 * when it is full (`concat` allocates exactly; `push` would reserve 16 more items,
 * and most windows and ledgers hold a few). The room is what lets a write store a
 * number into an array that exists instead of allocating; its bound (at most
 * twice the items) is what keeps the state the collector copies small.
 */
const storeNumber = (list: number[], n: number, item: number): number[] => {
  if (n < list.length) {
    list[n] = item
    return list
  }
  if (n === 0) return [item]
  const grown = list.concat(list)
  grown[n] = item
  return grown
}

/** `storeNumber` for a ledger's bodies. */
const storeBody = (list: Body[], n: number, item: Body): Body[] => {
  if (n < list.length) {
    list[n] = item
    return list
  }
  if (n === 0) return [item]
  const grown = list.concat(list)
  grown[n] = item
  // The copy's room repeats the old bodies: cleared, so a dropped entry's evidence is not kept alive.
  for (let i = n + 1; i < grown.length; i++) grown[i] = NO_BODY
  return grown
}

// Numbers and bodies go through functions of their own, never one generic function:
// a store site (`list[n] = item`) that has seen arrays of objects moves the arrays of
// doubles it writes next to the general kind, which boxes every number (V8
// generalises elements kinds per site), and an array literal site does the same.
// The near-identical bodies are deliberate: two closures made by one factory share
// their sites too (checked: the arrays of doubles came out as arrays of objects), so
// only separate function literals keep the kinds apart.

/** Moves numbers `drop..n` to the front (the caller lowers its count by `drop`). */
const shiftNumbers = (list: number[], drop: number, n: number): void => {
  for (let i = drop; i < n; i++) list[i - drop] = list[i] as number
}

/** `shiftNumbers` for a ledger's bodies. */
const shiftBodies = (list: Body[], drop: number, n: number): void => {
  for (let i = drop; i < n; i++) list[i - drop] = list[i] as Body
}

/** Cuts a slot's arrays to exactly its items (what the sweep leaves a key with). */
const compact = (slot: Slot): void => {
  if (slot instanceof Hits) {
    slot.ts = slot.ts.slice(0, slot.n)
    if (slot.members) slot.members = slot.members.slice(0, slot.n)
  } else if (slot instanceof Ledger) {
    slot.at = slot.at.slice(0, slot.n)
    slot.bodies = slot.bodies.slice(0, slot.n)
  } else if (slot instanceof RecentList && typeof slot.values !== 'string') {
    slot.values = slot.values.slice()
    if (typeof slot.counts !== 'number') slot.counts = slot.counts.slice()
  }
}

/**
 * At most this many recent hits are counted per window (`WINDOW_CAP` in the Store
 * contract): counts saturate there, which is enough because every threshold is
 * below it. Arrays may grow to twice the cap before being cut back, so a hot key
 * (one IP hammering a login) pays an occasional shift, not one per hit.
 */
const MAX_HITS = WINDOW_CAP

/** An option that must be a whole number of at least 1, or its default. */
const positiveInteger = (options: MemoryStoreOptions, name: keyof MemoryStoreOptions, fallback: number): number => {
  const value = options[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `MemoryStore: "${name}" must be a whole number of at least 1, got ${JSON.stringify(value) ?? String(value)}.`,
    )
  }
  return value
}

/**
 * The embedded default store. Bounded: keys expire (checked on access, swept
 * incrementally by one `unref`ed timer, never a timer per key) and the number of
 * keys is capped. Past the cap the key written longest ago is evicted, with a
 * second chance (the CLOCK approximation of least-recently-written): a key
 * written again since it was inserted, or since eviction last passed over it,
 * is moved behind the newest instead, which keeps the Map's order untouched on
 * ordinary writes. Operations run synchronously, so a `run()` batch is trivially
 * atomic in one process.
 */
export class MemoryStore implements Store {
  readonly #owners = new Map<string, Owner>()
  readonly #hand = new ClockHand(this.#owners)
  readonly #maxKeys: number
  readonly #sweepBatch: number
  #sweepCursor: IterableIterator<[string, Owner]> | undefined
  #timer: NodeJS.Timeout | undefined
  #evicted = 0
  // Consecutive ops (and an event's two batches) mostly address the same key:
  // remember the last lookup. Every path that removes a key from the Map forgets it.
  #lastKey: string | undefined
  #lastOwner: Owner | undefined
  /** Bodies of entries without evidence, one per detection (the most frequent entries share it). */
  readonly #bodies = new Map<string, Body>()
  /** Scratch for counting distinct members (at most `DISTINCT_CAP`), reused by every hit. */
  readonly #seen: number[] = []
  /** The latest `now` any op was given (event time), and the wall clock when a sweep first saw it. */
  #newest = 0
  #newestSeen = 0
  #newestWall = 0

  constructor(options?: MemoryStoreOptions) {
    checkOptions('MemoryStore', options, ['maxKeys', 'sweepInterval', 'sweepBatch'])
    options ??= {}
    this.#maxKeys = positiveInteger(options, 'maxKeys', defaultMaxKeys())
    this.#sweepBatch = positiveInteger(options, 'sweepBatch', 20_000)
    this.#timer = setInterval(() => this.sweep(this.#sweepTime()), positiveInteger(options, 'sweepInterval', 60_000))
    this.#timer.unref()
  }

  /** The most keys (owners) held at once: the `maxKeys` option, or its default for this process's heap. */
  get maxKeys(): number {
    return this.#maxKeys
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

  /** The same as `run`, without the promise. */
  runSync(ops: readonly StoreOp[], now: number): StoreResult[] {
    const results: StoreResult[] = new Array(ops.length)
    for (let i = 0; i < ops.length; i++) results[i] = this.#apply(ops[i] as StoreOp, now)
    return results
  }

  /**
   * Runs one operation and answers at once (the risk engine's path: it runs a batch
   * one operation at a time, which is the same as `run` since nothing else can run in
   * between). The store never keeps `op`: a caller may reuse the object.
   */
  applySync(op: StoreOp, now: number): StoreResult {
    return this.#apply(op, now)
  }

  /**
   * The time the timer sweeps at: the store's own time, not the wall clock. Expiry is
   * decided by the `now` ops are given, which is event time (a hub replaying a forwarder's
   * backlog scores events hours or days old): swept by `Date.now()`, a window that those
   * events still count would be dropped mid-replay, while Redis (pruned by the batch's
   * `now`) keeps it. So the sweep uses the newest `now` a write was given, moved on by the wall-clock
   * time since a sweep first saw it, so that an idle store still frees what expires (an
   * underestimate by up to one interval: it only sweeps later). Tracked per op by one
   * comparison; `Date.now()` is read once per sweep tick, not per op.
   */
  #sweepTime(): number {
    const wall = Date.now()
    if (this.#newest !== this.#newestSeen) {
      this.#newestSeen = this.#newest
      this.#newestWall = wall
    }
    // Never ahead of the wall clock: an event from a sender whose clock runs fast (a hub
    // accepts them up to a minute and a half ahead) must not expire live keys early.
    return Math.min(this.#newest + (wall - this.#newestWall), wall)
  }

  /**
   * Drops expired keys and expired fields, and cuts the arrays of live keys to
   * their exact size; at most `sweepBatch` keys examined per call.
   */
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
      if (owner.expires <= now) {
        this.#delete(key, owner)
        continue
      }
      owner.slots = keep(owner.slots, (slot) => slot.expires > now)
      for (const slot of owner.slots) compact(slot)
    }
    this.#sweepCursor = cursor
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    this.#owners.clear()
    this.#hand.reset()
    this.#bodies.clear()
    this.#sweepCursor = undefined
    this.#forgetLookup()
  }

  #forgetLookup(): void {
    this.#lastKey = undefined
    this.#lastOwner = undefined
  }

  #delete(key: string, owner: Owner): void {
    this.#owners.delete(key)
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

  /** The slot of a field, live or expired (an expired slot is reused in place by the next write). */
  #find(owner: Owner | undefined, field: string): Slot | undefined {
    if (owner === undefined) return undefined
    const { slots } = owner
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i] as Slot
      if (slot.field === field) return slot
    }
    return undefined
  }

  /** The live slot of a field, if any. */
  #slot(owner: Owner | undefined, field: string, now: number): Slot | undefined {
    const slot = this.#find(owner, field)
    return slot !== undefined && slot.expires > now ? slot : undefined
  }

  /** Records a write to a slot already held by `owner` (its expiry may have moved). */
  #wrote(owner: Owner, expires: number): void {
    if (expires > owner.expires) owner.expires = expires
    owner.rewritten = true
  }

  /**
   * Attaches a new slot under its key (replacing a slot of the same field that
   * is of another kind), creating the owner if needed; returns the owner.
   */
  #attach(key: string, owner: Owner | undefined, slot: Slot): Owner {
    if (owner !== undefined) {
      const { slots } = owner
      let i = 0
      while (i < slots.length && (slots[i] as Slot).field !== slot.field) i++
      if (i === slots.length) owner.slots = append(slots, slot)
      else slots[i] = slot
      this.#wrote(owner, slot.expires)
      return owner
    }
    const created = new Owner(slot.expires, [slot])
    this.#owners.set(key, created)
    this.#lastKey = key
    this.#lastOwner = created
    if (this.#owners.size > this.#maxKeys) this.#evict(created)
    return created
  }

  /** Evicts one key: the next in the Map's order not written since it was last passed over (never `spare`). */
  #evict(spare: Owner): void {
    const victim = this.#hand.victim(spare, takeSecondChance)
    if (victim === undefined) return
    this.#delete(victim[0], victim[1])
    this.#evicted++
  }

  /** Sets a mark if absent; the owner it is now under, or `undefined` when it was already set. */
  #mark(key: string, owner: Owner | undefined, field: string, ttl: number, now: number): Owner | undefined {
    const slot = this.#find(owner, field)
    const expires = now + ttl
    if (slot instanceof Mark && owner !== undefined) {
      if (slot.expires > now) return undefined
      slot.expires = expires
      this.#wrote(owner, expires)
      return owner
    }
    if (slot !== undefined && slot.expires > now) return undefined
    return this.#attach(key, owner, new Mark(field, expires))
  }

  #apply(op: StoreOp, now: number): StoreResult {
    // Writes move the store's time on; reads do not: `risk()` and the hub's lists read at
    // the wall clock, which during a backlog replay would put the sweep back on it.
    if (now > this.#newest && op.op !== 'marked' && op.op !== 'read' && (op.op !== 'hit' || op.add)) this.#newest = now
    switch (op.op) {
      case 'hit':
        return this.#hit(op, now)
      case 'reset': {
        const owner = this.#owner(op.key, now)
        const slot = this.#find(owner, op.field)
        if (owner !== undefined && slot !== undefined) forgetSlot(owner, slot)
        return null
      }
      case 'move':
        this.#move(op, now)
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
        return slot instanceof Ledger ? entriesOf(slot, op.since) : []
      }
    }
  }

  #move(op: Extract<StoreOp, { op: 'move' }>, now: number): void {
    if (op.key === op.to) return
    const source = this.#owner(op.key, now)
    const from = this.#slot(source, op.field, now)
    // Recent-value lists are not moved (devices are per user: a login's are not the user's).
    if (source === undefined || from === undefined || from instanceof RecentList) return
    const target = this.#owner(op.to, now)
    const into = this.#slot(target, op.field, now)
    if (from instanceof Ledger) {
      this.#attach(op.to, target, into instanceof Ledger ? mergeLedgers(into, from) : copyLedger(from))
      // Cleared: the source slot is reused by its key's next score, and must not keep the bodies alive.
      forget(from.bodies, 0, from.n)
      from.n = 0
    } else if (from instanceof Mark) {
      if (into instanceof Mark && target !== undefined) {
        if (from.expires > into.expires) into.expires = from.expires
        this.#wrote(target, into.expires)
      } else this.#attach(op.to, target, new Mark(op.field, from.expires))
    } else this.#attach(op.to, target, into instanceof Hits ? mergeHits(from, into) : copyHits(from))
    // Forgotten last: the copies above took its expiry.
    forgetSlot(source, from)
  }

  #hit(op: Extract<StoreOp, { op: 'hit' }>, now: number): HitResult {
    const owner = this.#owner(op.key, now)
    const found = this.#find(owner, op.field)
    let hits = found instanceof Hits ? found : undefined
    if (hits !== undefined && hits.expires <= now) {
      if (!op.add) return { count: 0, distinct: 0, member: 0 }
      // An expired (or reset) window starts again, in the same arrays, untracked until a
      // hit names a member (as a new window, and as the Redis store's fresh value).
      hits.n = 0
      if (op.member === undefined) hits.members = undefined
    }
    const wanted = op.member === undefined ? -1 : memberHash(op.member)
    if (op.add) {
      const expires = now + op.ttl
      if (hits === undefined || owner === undefined) {
        hits = new Hits(op.field, expires, 1, [now], wanted === -1 ? undefined : [wanted])
        this.#attach(op.key, owner, hits)
      } else {
        const { ts } = hits
        let n = hits.n
        // Drop what no window can count any more, then record this hit.
        const horizon = now - op.ttl
        let drop = 0
        while (drop < n && (ts[drop] as number) <= horizon) drop++
        // The MAX_HITS newest are kept (not one fewer: this hit may be late, older than them).
        if (n - drop >= 2 * MAX_HITS) drop = n - MAX_HITS
        if (drop > 0) {
          shiftNumbers(ts, drop, n)
          if (hits.members) shiftNumbers(hits.members, drop, n)
          n -= drop
        }
        if (wanted !== -1 && hits.members === undefined) hits.members = new Array<number>(ts.length).fill(NO_MEMBER)
        const hash = wanted === -1 ? NO_MEMBER : wanted
        const times = storeNumber(ts, n, now)
        const members = hits.members ? storeNumber(hits.members, n, hash) : undefined
        // A late hit (an event scored after newer ones: a forwarder's backlog at the hub) goes
        // to its place in time, so the window stays ascending and counts it by its own time.
        let at = n
        while (at > 0 && (times[at - 1] as number) > now) {
          times[at] = times[at - 1] as number
          if (members) members[at] = members[at - 1] as number
          at--
        }
        if (at !== n) {
          times[at] = now
          if (members) members[at] = hash
        }
        hits.ts = times
        hits.members = members
        hits.n = n + 1
        // A late hit does not shorten the window's life.
        if (expires > hits.expires) hits.expires = expires
        this.#wrote(owner, expires)
      }
    }
    if (hits === undefined) return { count: 0, distinct: 0, member: 0 }
    const { ts, members, n } = hits
    // Timestamps are ascending: the window's start is found by binary search. (Skipping
    // it when a write has just dropped the older hits gained nothing measurable, and with
    // times going backwards the hits kept are not all after the horizon: left out.)
    let lo = Math.max(0, n - MAX_HITS)
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((ts[mid] as number) > op.since) hi = mid
      else lo = mid + 1
    }
    const count = n - lo
    // Members are looked at only when the op names one (see the contract).
    if (wanted === -1 || members === undefined) return { count, distinct: 0, member: 0 }
    let member = 0
    // Distinct members, saturating at DISTINCT_CAP: small fixed work even on a hot key.
    const seen = this.#seen
    let distinct = 0
    for (let i = n - 1; i >= lo; i--) {
      const m = members[i] as number
      if (m === wanted) member++
      if (distinct < DISTINCT_CAP) {
        let j = 0
        while (j < distinct && seen[j] !== m) j++
        if (j === distinct) seen[distinct++] = m
      }
    }
    return { count, distinct, member }
  }

  #remember(op: Extract<StoreOp, { op: 'remember' }>, now: number): RememberResult {
    const owner = this.#owner(op.key, now)
    const found = this.#find(owner, op.field)
    const expires = now + op.ttl
    const value = op.value
    if (!(found instanceof RecentList) || found.expires <= now || owner === undefined) {
      if (found instanceof RecentList && owner !== undefined) {
        found.values = value
        found.counts = 1
        found.expires = expires
        this.#wrote(owner, expires)
      } else this.#attach(op.key, owner, new RecentList(op.field, expires, value, 1))
      return { seen: false, size: 0 }
    }
    found.expires = expires
    this.#wrote(owner, expires)
    const max = Math.max(1, op.max)
    const values = found.values
    const counts = found.counts
    if (typeof values === 'string' && typeof counts === 'number') {
      // One run: the same value again lengthens it; another starts a second run.
      if (values === value) found.counts = Math.min(max, counts + 1)
      else if (max === 1) {
        found.values = value
        found.counts = 1
      } else {
        found.values = [value, values]
        found.counts = [1, Math.min(counts, max - 1)]
      }
      return { seen: values === value, size: counts }
    }
    const vs = values as string[]
    const cs = counts as number[]
    let size = 0
    let seen = false
    for (let i = 0; i < vs.length; i++) {
      size += cs[i] as number
      if (vs[i] === value) seen = true
    }
    if (vs[0] === value) cs[0] = (cs[0] as number) + 1
    else {
      vs.unshift(value)
      cs.unshift(1)
    }
    // Forget the oldest beyond `max` (one value at most: the list held `max` before this one).
    for (let over = size + 1 - max; over > 0; ) {
      const last = cs.length - 1
      const c = cs[last] as number
      if (c > over) {
        cs[last] = c - over
        over = 0
      } else {
        vs.pop()
        cs.pop()
        over -= c
      }
    }
    if (vs.length === 1) {
      found.values = vs[0] as string
      found.counts = cs[0] as number
    }
    return { seen, size }
  }

  /** One shared body for entries without evidence (most of them); a body of its own otherwise. */
  #body(entry: LedgerEntry): Body {
    if (entry.evidence !== undefined)
      return { detection: entry.detection, points: entry.points, evidence: entry.evidence }
    const shared = this.#bodies.get(entry.detection)
    if (shared !== undefined && shared.points === entry.points) return shared
    const body: Body = { detection: entry.detection, points: entry.points, evidence: undefined }
    if (this.#bodies.size < 1_000) this.#bodies.set(entry.detection, body)
    return body
  }

  #score(op: Extract<StoreOp, { op: 'score' }>, now: number): ScoreResult {
    let owner = this.#owner(op.key, now)
    const found = this.#find(owner, op.field)
    let ledger = found instanceof Ledger ? found : undefined
    if (ledger !== undefined && ledger.expires <= now) {
      // An expired ledger starts again, in the same arrays.
      forget(ledger.bodies, 0, ledger.n)
      ledger.n = 0
    }
    const added: LedgerEntry[] = []
    let unordered = false
    for (const { entry, once } of op.entries) {
      if (once !== undefined) {
        const marked = this.#mark(op.key, owner, once.field, once.ttl, now)
        if (marked === undefined) continue
        owner = marked
      }
      if (ledger === undefined || owner === undefined) {
        ledger = new Ledger(op.field, now + op.ttl, 1, [entry.at], [this.#body(entry)])
        owner = this.#attach(op.key, owner, ledger)
      } else {
        const { n } = ledger
        if (n > 0 && entry.at < (ledger.at[n - 1] as number)) unordered = true
        ledger.at = storeNumber(ledger.at, n, entry.at)
        ledger.bodies = storeBody(ledger.bodies, n, this.#body(entry))
        ledger.n = n + 1
      }
      added.push(entry)
    }
    let sum = 0
    if (ledger !== undefined && owner !== undefined) {
      // Merged entries (a login's earlier failures) can be older than the user's own:
      // keep the ledger oldest first, as reads and trimming rely on it.
      if (unordered) sortLedger(ledger)
      const { at, bodies, n } = ledger
      let drop = 0
      while (drop < n && (at[drop] as number) <= op.keepSince) drop++
      drop = Math.max(drop, n - op.max)
      if (drop > 0) {
        shiftNumbers(at, drop, n)
        shiftBodies(bodies, drop, n)
        forget(bodies, n - drop, n)
        ledger.n = n - drop
      }
      if (added.length > 0 || ledger.expires > now) {
        ledger.expires = now + op.ttl
        this.#wrote(owner, ledger.expires)
      }
      // The window is the ledger's newest entries: found from the end, then summed oldest
      // first (the order the Redis script adds them in, so both stores agree to the last bit).
      let start = ledger.n
      while (start > 0 && (at[start - 1] as number) > op.windowSince) start--
      for (let i = start; i < ledger.n; i++) sum += (bodies[i] as Body).points
    }
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

/** Forgets a slot: expired, it is invisible to reads and reused by the next write; the sweep drops it. */
const forgetSlot = (owner: Owner, slot: Slot): void => {
  slot.expires = 0
  // The key lives as long as its longest-lived field: with none left, the next lookup or sweep drops it.
  let latest = 0
  for (const other of owner.slots) if (other.expires > latest) latest = other.expires
  owner.expires = latest
}

/** A window's live hits in arrays of their own (the source's slot is forgotten, and reused by its next write). */
const copyHits = (hits: Hits): Hits => {
  const from = Math.max(0, hits.n - MAX_HITS)
  const ts = hits.ts.slice(from, hits.n)
  return new Hits(hits.field, hits.expires, ts.length, ts, hits.members?.slice(from, hits.n))
}

/** Two windows' hits in time order (the most recent `MAX_HITS`), members kept with them. */
const mergeHits = (a: Hits, b: Hits): Hits => {
  const tracked = a.members !== undefined || b.members !== undefined
  const total = Math.min(MAX_HITS, a.n + b.n)
  const ts = new Array<number>(total)
  const members = tracked ? new Array<number>(total) : undefined
  // From the newest backwards, so the oldest are the ones past the cap.
  let i = a.n - 1
  let j = b.n - 1
  for (let k = total - 1; k >= 0; k--) {
    const fromA = j < 0 || (i >= 0 && (a.ts[i] as number) > (b.ts[j] as number))
    const hits = fromA ? a : b
    const at = fromA ? i-- : j--
    ts[k] = hits.ts[at] as number
    if (members !== undefined) members[k] = hits.members === undefined ? NO_MEMBER : (hits.members[at] as number)
  }
  return new Hits(a.field, Math.max(a.expires, b.expires), total, ts, members)
}

/** A ledger's entries in arrays of their own (the source's are cleared and reused by its next score). */
const copyLedger = (ledger: Ledger): Ledger =>
  new Ledger(ledger.field, ledger.expires, ledger.n, ledger.at.slice(0, ledger.n), ledger.bodies.slice(0, ledger.n))

/**
 * Two ledgers' entries in time order, `into`'s first at equal times (the order the
 * engine's score gave them when it appended a login's entries itself, and the Redis
 * script's), with the later expiry. Both are ascending: one pass, no sort. Not cut to a
 * maximum here: the score that follows the move (the engine's next op) trims it.
 */
const mergeLedgers = (into: Ledger, from: Ledger): Ledger => {
  const total = into.n + from.n
  const at = new Array<number>(total)
  const bodies = new Array<Body>(total)
  let i = 0
  let j = 0
  for (let k = 0; k < total; k++) {
    const fromInto = j >= from.n || (i < into.n && (into.at[i] as number) <= (from.at[j] as number))
    if (fromInto) {
      at[k] = into.at[i] as number
      bodies[k] = into.bodies[i++] as Body
    } else {
      at[k] = from.at[j] as number
      bodies[k] = from.bodies[j++] as Body
    }
  }
  return new Ledger(into.field, Math.max(into.expires, from.expires), total, at, bodies)
}

/** Clears a ledger's room from `from` to `to` (entries dropped or expired), so their bodies can be collected. */
const forget = (bodies: Body[], from: number, to: number): void => {
  for (let i = from; i < to; i++) bodies[i] = NO_BODY
}

/** A ledger's entries after `since`, oldest first, as the contract's objects. */
const entriesOf = (ledger: Ledger, since: number): LedgerEntry[] => {
  const { at, bodies, n } = ledger
  const out: LedgerEntry[] = []
  for (let i = 0; i < n; i++) {
    const t = at[i] as number
    if (t <= since) continue
    const { detection, points, evidence } = bodies[i] as Body
    out.push(evidence === undefined ? { detection, points, at: t } : { detection, points, at: t, evidence })
  }
  return out
}

/** Orders a ledger's entries by time (stable: entries of the same time keep their order). */
const sortLedger = (ledger: Ledger): void => {
  const { at, bodies, n } = ledger
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (at[a] as number) - (at[b] as number) || a - b)
  ledger.at = order.map((i) => at[i] as number)
  ledger.bodies = order.map((i) => bodies[i] as Body)
}
