import type { ScoredEntry, StoreOp, StoreResult, Threshold } from '../store/store.js'

/**
 * Where the detectors and the engine put the store operations one event needs.
 * Each call returns the index of its answer in the batch's results. Two kinds:
 *
 * - `OpList` collects `StoreOp` objects for `store.run()` (the Redis store: one
 *   atomic script per batch);
 * - `DirectOps` runs each operation at once on a synchronous store (the memory
 *   store), through a handful of operation objects it reuses and one results
 *   array. Running at once is the same as running the batch afterwards: no
 *   operation of a batch depends on another's answer, the engine reads the
 *   answers only once the batch is complete, and a synchronous store cannot be
 *   reached by another event in between. Alert and score listeners run after
 *   the batches; only code the engine calls while building one (an event's
 *   getter, say) could re-enter it, and `busy` sends that to a fresh sink.
 *
 * Why two: with the memory store, the operation objects and result arrays of a
 * batch were half of what an event allocated, and at 100,000+ events a second
 * the young-generation collections that allocation triggers were a third of the
 * engine's time (measured: `bench/engine.ts`; bench/README "Risk engine", bench/HISTORY.md).
 */
export interface OpSink {
  hit(key: string, field: string, add: boolean, since: number, ttl: number, member?: string): number
  reset(key: string, field: string): number
  move(key: string, field: string, to: string): number
  claim(key: string, field: string, ttl: number): number
  marked(key: string, field: string): number
  remember(key: string, field: string, value: string, max: number, ttl: number): number
  score(
    key: string,
    field: string,
    entries: readonly ScoredEntry[],
    keepSince: number,
    max: number,
    ttl: number,
    windowSince: number,
    thresholds: readonly Threshold[],
  ): number
  read(key: string, field: string, since: number): number
}

/** Collects a batch as `StoreOp` objects, for `store.run()`. */
export class OpList implements OpSink {
  readonly ops: StoreOp[] = []

  #push(op: StoreOp): number {
    return this.ops.push(op) - 1
  }

  hit(key: string, field: string, add: boolean, since: number, ttl: number, member?: string): number {
    return this.#push(
      member === undefined
        ? { op: 'hit', key, field, add, since, ttl }
        : { op: 'hit', key, field, add, since, ttl, member },
    )
  }
  reset(key: string, field: string): number {
    return this.#push({ op: 'reset', key, field })
  }
  move(key: string, field: string, to: string): number {
    return this.#push({ op: 'move', key, field, to })
  }
  claim(key: string, field: string, ttl: number): number {
    return this.#push({ op: 'claim', key, field, ttl })
  }
  marked(key: string, field: string): number {
    return this.#push({ op: 'marked', key, field })
  }
  remember(key: string, field: string, value: string, max: number, ttl: number): number {
    return this.#push({ op: 'remember', key, field, value, max, ttl })
  }
  score(
    key: string,
    field: string,
    entries: readonly ScoredEntry[],
    keepSince: number,
    max: number,
    ttl: number,
    windowSince: number,
    thresholds: readonly Threshold[],
  ): number {
    return this.#push({ op: 'score', key, field, entries, keepSince, max, ttl, windowSince, thresholds })
  }
  read(key: string, field: string, since: number): number {
    return this.#push({ op: 'read', key, field, since })
  }
}

/** A store that answers one operation synchronously (the memory store). */
export interface SyncStore {
  applySync(op: StoreOp, now: number): StoreResult
}

type Writable<T> = { -readonly [K in keyof T]: T[K] }
type OpOf<K extends StoreOp['op']> = Writable<Extract<StoreOp, { op: K }>>

const NO_ENTRIES: readonly ScoredEntry[] = []
const NO_THRESHOLDS: readonly Threshold[] = []

/**
 * Runs each operation at once on a synchronous store. One per engine, reused
 * for every batch (`begin` restarts the count of answers; `end` clears them);
 * the store never keeps an operation object, so refilling them is safe.
 * Results are read before the next `begin`.
 */
export class DirectOps implements OpSink {
  /** The answers of the current batch, in call order (items past the batch's are stale). */
  readonly results: StoreResult[] = []
  /** Answers in the current batch. A count, not `results.length = 0`, which would free the array's room every batch. */
  #n = 0
  /** Set between `begin` and `end`: a listener that scores an event from inside a batch gets a fresh sink. */
  busy = false
  #now = 0
  readonly #hit: OpOf<'hit'> = { op: 'hit', key: '', field: '', add: false, since: 0, ttl: 0, member: undefined }
  readonly #reset: OpOf<'reset'> = { op: 'reset', key: '', field: '' }
  readonly #move: OpOf<'move'> = { op: 'move', key: '', field: '', to: '' }
  readonly #claim: OpOf<'claim'> = { op: 'claim', key: '', field: '', ttl: 0 }
  readonly #marked: OpOf<'marked'> = { op: 'marked', key: '', field: '' }
  readonly #remember: OpOf<'remember'> = { op: 'remember', key: '', field: '', value: '', max: 0, ttl: 0 }
  readonly #score: OpOf<'score'> = {
    op: 'score',
    key: '',
    field: '',
    entries: NO_ENTRIES,
    keepSince: 0,
    max: 0,
    ttl: 0,
    windowSince: 0,
    thresholds: NO_THRESHOLDS,
  }
  readonly #read: OpOf<'read'> = { op: 'read', key: '', field: '', since: 0 }

  constructor(readonly store: SyncStore) {}

  /** Starts a batch at `now` (epoch ms). */
  begin(now: number): this {
    this.#n = 0
    this.#now = now
    this.busy = true
    return this
  }

  /** Ends a batch: the sink may be reused. */
  end(): void {
    this.busy = false
    // Answers are not kept alive past their event (ledger reads can be long).
    this.results.fill(null)
  }

  #run(op: StoreOp): number {
    const at = this.#n++
    this.results[at] = this.store.applySync(op, this.#now)
    return at
  }

  hit(key: string, field: string, add: boolean, since: number, ttl: number, member?: string): number {
    const op = this.#hit
    op.key = key
    op.field = field
    op.add = add
    op.since = since
    op.ttl = ttl
    op.member = member
    return this.#run(op)
  }
  reset(key: string, field: string): number {
    const op = this.#reset
    op.key = key
    op.field = field
    return this.#run(op)
  }
  move(key: string, field: string, to: string): number {
    const op = this.#move
    op.key = key
    op.field = field
    op.to = to
    return this.#run(op)
  }
  claim(key: string, field: string, ttl: number): number {
    const op = this.#claim
    op.key = key
    op.field = field
    op.ttl = ttl
    return this.#run(op)
  }
  marked(key: string, field: string): number {
    const op = this.#marked
    op.key = key
    op.field = field
    return this.#run(op)
  }
  remember(key: string, field: string, value: string, max: number, ttl: number): number {
    const op = this.#remember
    op.key = key
    op.field = field
    op.value = value
    op.max = max
    op.ttl = ttl
    return this.#run(op)
  }
  score(
    key: string,
    field: string,
    entries: readonly ScoredEntry[],
    keepSince: number,
    max: number,
    ttl: number,
    windowSince: number,
    thresholds: readonly Threshold[],
  ): number {
    const op = this.#score
    op.key = key
    op.field = field
    op.entries = entries
    op.keepSince = keepSince
    op.max = max
    op.ttl = ttl
    op.windowSince = windowSince
    op.thresholds = thresholds
    const at = this.#run(op)
    // The entries belong to this event: not kept alive by the reused object.
    op.entries = NO_ENTRIES
    return at
  }
  read(key: string, field: string, since: number): number {
    const op = this.#read
    op.key = key
    op.field = field
    op.since = since
    return this.#run(op)
  }
}
