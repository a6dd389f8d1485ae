import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import type { Redis, RedisOptions } from 'ioredis'
import { describeError } from '../diagnostics.js'
import { didYouMean, SqreenAuthError } from '../errors.js'
import type { Logger, OptionsInput } from '../options.js'
import { BATCH_SCRIPT } from './redis.lua.js'
import type {
  HitResult,
  LedgerEntry,
  RememberResult,
  ScoredEntry,
  ScoreResult,
  Store,
  StoreOp,
  StoreResult,
  Threshold,
} from './store.js'

/**
 * An ioredis client (`new Redis(...)` of a single server), as far as the store
 * relies on it. Declared by shape rather than imported from ioredis, so that the
 * package's own type declarations never load ioredis's: those import the untyped
 * `redis-errors` package and fail an application's type-check of its dependencies'
 * declarations (`skipLibCheck: false`) unless it installs `@types/redis-errors`,
 * even when it never uses Redis.
 */
export interface RedisClient {
  readonly status: string
  connect(): Promise<void>
  quit(): Promise<unknown>
  disconnect(): void
  evalsha(sha: string, numKeys: number, ...args: (string | Buffer | number)[]): Promise<unknown>
  /** The keys and arguments as one array (ioredis flattens it): no spread of a long list into a call. */
  evalsha(sha: string, numKeys: number, args: (string | Buffer)[]): Promise<unknown>
  eval(script: string, numKeys: number, ...args: (string | Buffer | number)[]): Promise<unknown>
  eval(script: string, numKeys: number, args: (string | Buffer)[]): Promise<unknown>
  script(subcommand: 'LOAD', script: string): Promise<unknown>
  /** Read once, to warn about an eviction policy that would drop live state (optional: a shape without it is not asked). */
  config?(subcommand: 'GET', parameter: string): Promise<unknown>
  on(event: string, listener: (...args: unknown[]) => void): unknown
  once(event: string, listener: (...args: unknown[]) => void): unknown
  off(event: string, listener: (...args: unknown[]) => void): unknown
}

export interface RedisStoreOptions {
  /**
   * An ioredis client to use, with its own settings (`close()` leaves it open: it is
   * yours). Defaults to a client the store creates from `url`, tuned to fail fast
   * (see the README) and closed by `close()`.
   */
  client: RedisClient
  /** `redis://` or `rediss://` URL of the server. Defaults to `process.env.REDIS_URL`, else `'redis://127.0.0.1:6379'`. */
  url: string
  /** Prepended to every key, so several applications (or environments) can share a server. Defaults to `'sqreen:'`. */
  prefix: string
  /**
   * When batches wait and the server has sent nothing for this many ms, the connection is
   * taken for dead: the waiting batches fail (their events go unscored), the store
   * reconnects, and batches fail at once until it is back. Defaults to `1000`.
   */
  timeout: number
  /** How long one connection attempt may take, in ms. Defaults to `2000`. */
  connectTimeout: number
  /** Longest pause between reconnection attempts, in ms (the pauses double from 50 ms up to it). Defaults to `2000`. */
  maxReconnectDelay: number
  /** Where the loss and the return of the connection are reported, once per outage. Defaults to `console`. */
  logger: Logger
}

/** What a `RedisStore` has seen since it was created. */
export interface RedisStoreStats {
  /** `'starting'` (first connection under way), `'up'`, `'down'` (batches fail at once) or `'closed'`. */
  readonly state: RedisStoreState
  /** Batches sent to the server (including those that then failed). */
  readonly batches: number
  /** Batches that failed (server unreachable, timeout, error reply). */
  readonly failed: number
  /** Times the connection was lost (or could not be made at start-up). */
  readonly outages: number
  /** Times the script was (re)loaded after the server answered NOSCRIPT (a restart, a SCRIPT FLUSH). */
  readonly scriptLoads: number
}

export type RedisStoreState = 'starting' | 'up' | 'down' | 'closed'

const PREFIX = '[sqreen-auth]'
const KNOWN_KEYS = [
  'client',
  'url',
  'prefix',
  'timeout',
  'connectTimeout',
  'maxReconnectDelay',
  'logger',
] as const satisfies readonly (keyof RedisStoreOptions)[]

/** Batches waiting for the very first connection, at most; past it they fail at once like during an outage. */
const MAX_STARTUP_WAITERS = 10_000

/** Most batches in one script call: a call holds Redis for its whole run (32 batches: about a millisecond). */
const MAX_BATCHES_PER_CALL = 32
/**
 * Ops per script call at most (batches are grouped up to it; a larger batch goes alone).
 * A call's keys and arguments are a few per op, and Redis runs one script at a time: a
 * bounded call keeps both the argument list and the time Redis is held bounded.
 */
const MAX_OPS_PER_CALL = 4_000
/** A batch with more ops than this is refused: one script call must stay reasonable. */
const MAX_OPS_PER_BATCH = 50_000
/**
 * Longest TTL an op may ask for: 1,000 years, far below what Redis's PXAT takes and what a
 * Lua number holds exactly, so the script never meets one it refuses part-way; far above
 * any window or session an option can sensibly ask for.
 */
const MAX_TTL_MS = 1_000 * 365 * 86_400_000
/** Entries one score op may append (the engine adds a handful; the script inserts them in order). */
const MAX_SCORE_ENTRIES = 1_000

const finite = (n: unknown): boolean => typeof n === 'number' && Number.isFinite(n)
const goodTtl = (n: number): boolean => finite(n) && n > 0 && n <= MAX_TTL_MS
const goodCount = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= 1_000_000

/**
 * Why a batch cannot go to the script, or `undefined`. Checked before it shares a call:
 * the script writes some keys as it goes, and Redis does not roll back a script that
 * fails part-way, so a bad number in one batch would fail, or half-apply, the batches
 * sharing its call.
 */
const badBatch = (ops: readonly StoreOp[]): string | undefined => {
  if (ops.length > MAX_OPS_PER_BATCH) return `a batch has at most ${MAX_OPS_PER_BATCH} ops`
  for (const op of ops) {
    switch (op.op) {
      case 'hit':
        if (!goodTtl(op.ttl) || !finite(op.since)) return 'hit: ttl (ms, at most 1,000 years) and since must be finite'
        break
      case 'claim':
        if (!goodTtl(op.ttl)) return 'claim: ttl must be a positive number of ms (at most 1,000 years)'
        break
      case 'remember':
        if (!goodTtl(op.ttl) || !goodCount(op.max)) return 'remember: ttl and max must be positive'
        break
      case 'read':
        if (!finite(op.since)) return 'read: since must be finite'
        break
      case 'score': {
        if (!goodTtl(op.ttl) || !goodCount(op.max) || !finite(op.keepSince) || !finite(op.windowSince))
          return 'score: ttl, max, keepSince and windowSince must be finite and positive'
        if (op.entries.length > MAX_SCORE_ENTRIES) return `score: at most ${MAX_SCORE_ENTRIES} entries`
        for (const { entry, once } of op.entries) {
          if (!finite(entry.points) || !finite(entry.at)) return 'score: entry points and times must be finite'
          if (once !== undefined && !goodTtl(once.ttl)) return 'score: a once mark needs a positive ttl'
        }
        for (const t of op.thresholds) if (!finite(t.level) || !goodTtl(t.ttl)) return 'score: bad threshold'
        break
      }
    }
  }
  return undefined
}

const SHA = createHash('sha1').update(BATCH_SCRIPT).digest('hex')

// Op codes of the script's program (lib/store/redis.lua.ts).
const OP_HIT = 1
const OP_RESET = 2
const OP_CLAIM = 3
const OP_MARKED = 4
const OP_REMEMBER = 5
const OP_SCORE = 6
const OP_READ = 7
const OP_MOVE = 8

/**
 * The memory store's member hash (30-bit FNV-1a), so both stores count members the
 * same way, collisions included. Only the hashes reach Redis: members (IP prefixes,
 * login keys) are never stored there.
 */
const memberHash = (member: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < member.length; i++) h = Math.imul(h ^ member.charCodeAt(i), 0x01000193)
  return h & 0x3fffffff
}

/** The error a batch fails with while the server cannot be reached (the engine counts it, logins go on). */
export class RedisStoreUnavailableError extends SqreenAuthError {
  declare readonly code: 'ERR_SQREEN_REDIS_UNAVAILABLE'

  constructor(message: string) {
    super('ERR_SQREEN_REDIS_UNAVAILABLE', message)
    this.name = 'RedisStoreUnavailableError'
  }
}

// ioredis is loaded when a store creates its own client, not when the package is
// imported: applications on the memory store never pay for it.
const require = createRequire(import.meta.url)
const ioredis = (): typeof import('ioredis') => require('ioredis') as typeof import('ioredis')

const optionError = (name: string, expected: string, value: unknown): SqreenAuthError =>
  new SqreenAuthError(
    'ERR_SQREEN_OPTION_TYPE',
    `RedisStore: "${name}" must be ${expected}, got ${value === null ? 'null' : typeof value}.`,
  )

const positive = (
  options: OptionsInput<RedisStoreOptions>,
  name: keyof RedisStoreOptions,
  fallback: number,
): number => {
  const value = options[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw optionError(name, 'a positive number', value)
  return value
}

const isClient = (value: unknown): value is RedisClient =>
  value !== null &&
  typeof value === 'object' &&
  typeof (value as Partial<Redis>).evalsha === 'function' &&
  typeof (value as Partial<Redis>).on === 'function' &&
  typeof (value as Partial<Redis>).status === 'string'

const isNoScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT')

/**
 * A `Store` on Redis (through ioredis), for applications that run on several
 * processes or machines: they share counters, marks and ledgers, and each `run()`
 * batch executes whole inside one Lua script call, so batches from different
 * processes never interleave and "crossed the threshold" is decided exactly once.
 *
 * Layout (lib/store/redis.lua.ts): one key per owner, `<prefix>{<key>}`, holding its
 * windows, marks and device list, and one per ledger, `<prefix>{<key>}:<field>`; the
 * hash tag `{<key>}` keeps an owner's keys in one cluster slot, and every key carries
 * a TTL. Failure: when the server is out of reach, batches fail at once (nothing
 * queues up in memory), the engine counts them and logins go on; the store logs the
 * outage once and reconnects by itself.
 */
export class RedisStore implements Store {
  readonly #client: Redis
  readonly #owned: boolean
  readonly #prefix: string
  readonly #logger: Logger
  #state: RedisStoreState = 'starting'
  #lastError: unknown
  #downSince = 0
  #failedThisOutage = 0
  /** Connected again after an outage, and no script call has run yet (see #up). */
  #recovering = false
  #evictionChecked = false
  #batches = 0
  #failed = 0
  #outages = 0
  #scriptLoads = 0
  #loading: Promise<void> | undefined
  #pending: Pending[] = []
  /** Batches issued before the first connection is ready wait here (bounded in time and number). */
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = []
  #startTimer: NodeJS.Timeout | undefined
  readonly #listeners: [string, (...args: any[]) => void][]

  constructor(options: OptionsInput<RedisStoreOptions> = {}) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new SqreenAuthError('ERR_SQREEN_OPTIONS', 'RedisStore options must be an object.')
    }
    for (const key of Object.keys(options)) {
      if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
        throw new SqreenAuthError(
          'ERR_SQREEN_UNKNOWN_OPTION',
          `Unknown RedisStore option "${key}".${didYouMean(key, KNOWN_KEYS)}`,
        )
      }
    }
    const prefix = options.prefix ?? 'sqreen:'
    if (typeof prefix !== 'string') throw optionError('prefix', 'a string', prefix)
    // A brace in the prefix would become the cluster hash tag instead of the owner's key.
    if (/[{}]/.test(prefix)) {
      throw new SqreenAuthError(
        'ERR_SQREEN_OPTION_TYPE',
        `RedisStore: "prefix" must not contain { or }, got ${JSON.stringify(prefix)}.`,
      )
    }
    this.#prefix = prefix
    const logger = options.logger ?? console
    if (typeof logger?.warn !== 'function' || typeof logger.error !== 'function') {
      throw optionError('logger', 'an object with "warn" and "error" methods, like console', logger)
    }
    this.#logger = logger
    const timeout = positive(options, 'timeout', 1000)
    const connectTimeout = positive(options, 'connectTimeout', 2000)
    const maxReconnectDelay = positive(options, 'maxReconnectDelay', 2000)

    if (options.client !== undefined) {
      if (!isClient(options.client)) throw optionError('client', 'an ioredis client (new Redis(...))', options.client)
      // A batch addresses several owners (a user, an IP), which Cluster refuses in one script.
      if ((options.client as { isCluster?: unknown }).isCluster === true) {
        throw new SqreenAuthError(
          'ERR_SQREEN_OPTION_TYPE',
          'RedisStore: Redis Cluster is not supported; pass a client of a single server (or a Sentinel-managed primary).',
        )
      }
      if (options.url !== undefined) {
        throw new SqreenAuthError(
          'ERR_SQREEN_OPTION_TYPE',
          'RedisStore: pass either "client" (a client you configured) or "url" (the store makes its own), not both.',
        )
      }
      // Checked above to be a client; what the store calls beyond the declared shape is ioredis's.
      this.#client = options.client as unknown as Redis
      this.#owned = false
    } else {
      const url = options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
      if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
        throw new SqreenAuthError(
          'ERR_SQREEN_URL',
          `RedisStore: "url" must be a redis:// or rediss:// URL, got ${JSON.stringify(url)}.`,
        )
      }
      const settings = {
        // Fail fast instead of queueing: with the offline queue off, a batch issued while
        // the connection is down is refused at once, so memory cannot grow during an
        // outage and the engine's pending work (bounded by maxPending) drains.
        enableOfflineQueue: false,
        // Batches in flight when the connection drops fail at once, and are never
        // re-sent after reconnecting: the server may have run a batch whose reply was
        // lost, and running it twice would count its hits twice (at most once, not at
        // least once).
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        // Rather than a timer per command (ioredis's commandTimeout), one per socket: when
        // batches wait and the server has sent nothing for this long, the socket is dropped,
        // the batches fail and the store reconnects (a hung server becomes an outage).
        socketTimeout: timeout,
        connectTimeout,
        retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times - 1, 16), maxReconnectDelay),
        // The store sends the batches of one turn of the event loop as one call itself (#send).
        enableAutoPipelining: false,
        connectionName: 'sqreen-auth',
      } satisfies RedisOptions
      const { Redis: Client } = ioredis()
      this.#client = new Client(url, settings)
      this.#owned = true
    }

    const client = this.#client
    this.#listeners = [
      ['ready', () => this.#up()],
      [
        'error',
        (err: unknown) => {
          this.#lastError = err
          this.#lost(err)
        },
      ],
      ['close', () => this.#lost(this.#lastError)],
      ['end', () => this.#lost(this.#lastError)],
    ]
    for (const [event, listener] of this.#listeners) client.on(event, listener)

    if (client.status === 'ready') this.#state = 'up'
    else if (client.status === 'end' || client.status === 'close' || client.status === 'reconnecting') {
      this.#lost(new Error('the client passed in is not connected'))
    } else {
      if (client.status === 'wait') client.connect().catch(() => {})
      // The first connection must succeed within connectTimeout, or the batches waiting
      // for it fail and the store counts an outage (ioredis keeps trying in the background).
      this.#startTimer = setTimeout(
        () => this.#lost(new Error(`no connection within ${connectTimeout} ms`)),
        connectTimeout,
      )
      this.#startTimer.unref()
    }
  }

  /** Counters and the connection state (for monitoring and tests). */
  stats(): RedisStoreStats {
    return {
      state: this.#state,
      batches: this.#batches,
      failed: this.#failed,
      outages: this.#outages,
      scriptLoads: this.#scriptLoads,
    }
  }

  run(ops: readonly StoreOp[], now: number): Promise<StoreResult[]> {
    if (ops.length === 0) return Promise.resolve([])
    // Batches share script calls: one with no usable time must not fail the others with it.
    if (!Number.isFinite(now)) return Promise.reject(new TypeError(`RedisStore.run: now must be a finite number`))
    const bad = badBatch(ops)
    if (bad !== undefined) return Promise.reject(new TypeError(`RedisStore.run: ${bad}`))
    if (this.#client.status === 'ready' && this.#state !== 'closed') return this.#send(ops, now)
    if (this.#state === 'starting' && this.#waiters.length < MAX_STARTUP_WAITERS) {
      return new Promise<void>((resolve, reject) => {
        this.#waiters.push({ resolve, reject })
      }).then(() => this.#send(ops, now))
    }
    this.#failed++
    this.#failedThisOutage++
    return Promise.reject(this.#unavailable())
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#clearStart()
    this.#release(new RedisStoreUnavailableError('the Redis store was closed'))
    const client = this.#client
    for (const [event, listener] of this.#listeners) client.off(event, listener)
    if (!this.#owned) return
    // An error event with no listener left would be printed by ioredis: keep a silent one.
    client.on('error', () => {})
    if (client.status === 'end') return
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()))
    if (client.status === 'ready') {
      await client.quit().catch(() => client.disconnect())
    } else {
      client.disconnect()
    }
    // The socket is closed once 'end' is emitted; do not wait for it forever.
    await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 1000).unref())])
  }

  #unavailable(): RedisStoreUnavailableError {
    return new RedisStoreUnavailableError(
      this.#state === 'closed' ? 'the Redis store was closed' : 'the Redis store is not connected',
    )
  }

  #clearStart(): void {
    if (this.#startTimer !== undefined) clearTimeout(this.#startTimer)
    this.#startTimer = undefined
  }

  #release(err?: unknown): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const waiter of waiters) {
      if (err === undefined) waiter.resolve()
      else {
        this.#failed++
        this.#failedThisOutage++
        waiter.reject(err)
      }
    }
  }

  #up(): void {
    if (this.#state === 'closed') return
    this.#clearStart()
    const was = this.#state
    this.#state = 'up'
    this.#lastError = undefined
    // Connected is not yet working: during a write pause (CLIENT PAUSE WRITE, which a
    // FAILOVER issues) the ready check answers while every script call times out. The
    // outage is over, and said so, with the first batch that runs; a loss before that is
    // the same outage, not a new one.
    if (was === 'down') this.#recovering = true
    this.#release()
    this.#checkEviction()
  }

  /** A script call ran: the end of an outage, if one was being recovered from. */
  #worked(): void {
    if (!this.#recovering || this.#state !== 'up') return
    this.#recovering = false
    const seconds = ((Date.now() - this.#downSince) / 1000).toFixed(1)
    const line = `${PREFIX} redis_available: the Redis store works again after ${seconds} s; ${this.#failedThisOutage} batches failed during the outage (their events went unscored).`
    try {
      if (this.#logger.info) this.#logger.info(line)
      else this.#logger.warn(line)
    } catch {
      // A broken logger must not break the store.
    }
  }

  /**
   * Once per store: a server that evicts keys under memory pressure (allkeys-* or
   * volatile-*: every key of ours has a TTL) drops marks and ledgers while others live,
   * and an alert fires twice for one crossing. Said once; a server that refuses CONFIG
   * (managed services rename it) is not asked again.
   */
  #checkEviction(): void {
    if (this.#evictionChecked || typeof this.#client.config !== 'function') return
    this.#evictionChecked = true
    let asked: Promise<unknown>
    try {
      asked = this.#client.config('GET', 'maxmemory-policy')
    } catch {
      return
    }
    asked.then(
      (answer) => {
        const policy = Array.isArray(answer) ? answer[1] : undefined
        if (typeof policy !== 'string' || policy === 'noeviction') return
        try {
          this.#logger.warn(
            `${PREFIX} redis_eviction_policy: the Redis server's maxmemory-policy is "${policy}": under memory pressure it drops keys, and with them risk state that is still live (an alert can fire twice for one rise). Use "noeviction", or a Redis of its own.`,
          )
        } catch {
          // A broken logger must not break the store.
        }
      },
      () => {},
    )
  }

  /** The connection is gone (or never came): logged once per outage, however many events fail during it. */
  #lost(err: unknown): void {
    if (this.#state === 'down' || this.#state === 'closed') return
    if (this.#recovering) {
      // Connected again but nothing ran yet: still the same outage, already logged.
      this.#state = 'down'
      this.#release(this.#unavailable())
      return
    }
    const was = this.#state
    this.#state = 'down'
    this.#clearStart()
    this.#outages++
    this.#downSince = Date.now()
    this.#failedThisOutage = 0
    this.#release(this.#unavailable())
    const cause = err === undefined ? 'connection closed' : describeError(err)
    const what = was === 'starting' ? 'could not connect' : 'lost its connection'
    try {
      this.#logger.error(
        `${PREFIX} redis_unavailable: the Redis store ${what} (${cause}); events are not scored until it is back, logins are not affected (logged once per outage; it reconnects by itself).`,
      )
    } catch {
      // A broken logger must not break the store.
    }
  }

  /**
   * Queues a batch for the script call of this turn of the event loop. Scoring the
   * replies of one read from Redis issues the next batches of many events at once:
   * sent as one EVALSHA (each batch still runs whole, in order, and the call is atomic
   * anyway), they share the script's fixed costs in Redis and ioredis's per-command
   * costs in Node, and the call is written as soon as the burst is complete, while
   * Redis is still busy with the previous one (ioredis's auto-pipelining waits for
   * setImmediate, which makes Node and Redis take turns instead).
   */
  #send(ops: readonly StoreOp[], now: number): Promise<StoreResult[]> {
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ ops, now, resolve, reject }) === 1) process.nextTick(this.#flush)
    })
  }

  readonly #flush = (): void => {
    const pending = this.#pending
    this.#pending = []
    // Up to MAX_BATCHES_PER_CALL batches and MAX_OPS_PER_CALL ops per call (a larger batch alone).
    let start = 0
    let ops = 0
    for (let i = 0; i < pending.length; i++) {
      const size = (pending[i] as Pending).ops.length
      if (i > start && (i - start === MAX_BATCHES_PER_CALL || ops + size > MAX_OPS_PER_CALL)) {
        this.#call(pending.slice(start, i))
        start = i
        ops = 0
      }
      ops += size
    }
    if (start < pending.length) this.#call(start === 0 ? pending : pending.slice(start))
  }

  #call(batches: readonly Pending[]): void {
    this.#batches += batches.length
    let keys: string[]
    let argv: (string | Buffer)[]
    try {
      ;({ keys, argv } = encode(this.#prefix, batches))
    } catch (err) {
      this.#fail(batches, err)
      return
    }
    this.#eval(keys, argv).then(
      (reply) => {
        this.#worked()
        let done = 0
        try {
          const raw = JSON.parse(`[${reply}]`) as unknown[]
          let cursor = 0
          for (const batch of batches) {
            const results: StoreResult[] = new Array(batch.ops.length)
            cursor = decode(batch.ops, raw, cursor, results)
            batch.resolve(results)
            done++
          }
        } catch (err) {
          // A reply this code cannot read (a foreign script under our SHA?): fail what is left.
          this.#fail(batches.slice(done), err)
        }
      },
      (err: unknown) => this.#fail(batches, err),
    )
  }

  #fail(batches: readonly Pending[], err: unknown): void {
    this.#failed += batches.length
    this.#failedThisOutage += batches.length
    for (const batch of batches) batch.reject(err)
  }

  /** EVALSHA; after NOSCRIPT (a restarted or flushed server) the script is loaded once and the call re-sent. */
  #eval(keys: readonly string[], argv: readonly (string | Buffer)[]): Promise<string> {
    const client = this.#client
    // One array, not spread arguments (a long list overflows the call stack), and a throw
    // turned into a rejection: this runs from process.nextTick, where a throw would end the process.
    const args = (keys as (string | Buffer)[]).concat(argv)
    const call = (): Promise<string> => {
      try {
        return client.evalsha(SHA, keys.length, args) as Promise<string>
      } catch (err) {
        return Promise.reject(err)
      }
    }
    return call().catch((err: unknown) => {
      // NOSCRIPT means the script did not run: re-sending cannot apply a batch twice.
      if (!isNoScript(err)) throw err
      return this.#load()
        .then(call)
        .catch((again: unknown) => {
          // Flushed again in between: EVAL carries the script itself.
          if (!isNoScript(again)) throw again
          return client.eval(BATCH_SCRIPT, keys.length, args) as Promise<string>
        })
    })
  }

  /** One SCRIPT LOAD shared by every batch that met NOSCRIPT at the same time. */
  #load(): Promise<void> {
    this.#loading ??= this.#client
      .script('LOAD', BATCH_SCRIPT)
      .then(() => {
        this.#scriptLoads++
      })
      .finally(() => {
        this.#loading = undefined
      })
    return this.#loading
  }
}

interface Pending {
  readonly ops: readonly StoreOp[]
  readonly now: number
  readonly resolve: (results: StoreResult[]) => void
  readonly reject: (err: unknown) => void
}

/**
 * Builds one script call for several batches (see redis.lua.ts): KEYS (each key once),
 * ARGV[1] the program `[oldest now, batch count, (now, op count, op...)...]`, each op
 * its code and a fixed number of arguments, and the strings the program references
 * (ARGV index = position + 1).
 */
const encode = (prefix: string, batches: readonly Pending[]): { keys: string[]; argv: (string | Buffer)[] } => {
  const keys: string[] = []
  const argv: string[] = ['']
  // Looked up by the caller's own key strings (V8 caches their hashes), not by the Redis
  // key names, which would be built (and hashed) again for every op.
  const records = new Map<string, number>()
  const ledgers = new Map<string, Map<string, number>>()
  /** The owner's record: its windows, marks and recent-value lists. */
  const record = (key: string): number => {
    let i = records.get(key)
    if (i === undefined) {
      i = keys.push(`${prefix}{${key}}`)
      records.set(key, i)
    }
    return i
  }
  /** A ledger has a key of its own. */
  const ledger = (key: string, field: string): number => {
    let fields = ledgers.get(key)
    if (fields === undefined) {
      fields = new Map()
      ledgers.set(key, fields)
    }
    let i = fields.get(field)
    if (i === undefined) {
      i = keys.push(`${prefix}{${key}}:${field}`)
      fields.set(field, i)
    }
    return i
  }
  let oldest = Number.POSITIVE_INFINITY
  const program: (number | string)[] = [0, batches.length]
  for (const { ops, now } of batches) {
    if (now < oldest) oldest = now
    program.push(now, ops.length)
    for (const op of ops) {
      switch (op.op) {
        case 'hit':
          program.push(
            OP_HIT,
            record(op.key),
            op.field,
            op.add ? 1 : 0,
            op.since,
            op.ttl,
            op.member === undefined ? -1 : memberHash(op.member),
          )
          break
        case 'reset':
          program.push(OP_RESET, record(op.key), op.field, ledger(op.key, op.field))
          break
        case 'claim':
          program.push(OP_CLAIM, record(op.key), op.field, op.ttl)
          break
        case 'move':
          // The ledgers' keys too: the script looks there when the field is not in the record (as reset).
          program.push(
            OP_MOVE,
            record(op.key),
            op.field,
            record(op.to),
            ledger(op.key, op.field),
            ledger(op.to, op.field),
          )
          break
        case 'marked':
          program.push(OP_MARKED, record(op.key), op.field)
          break
        case 'remember':
          program.push(OP_REMEMBER, record(op.key), op.field, argv.push(op.value), op.max, op.ttl)
          break
        case 'score':
          program.push(
            OP_SCORE,
            record(op.key),
            ledger(op.key, op.field),
            op.keepSince,
            op.max,
            op.ttl,
            op.windowSince,
            op.entries.length,
          )
          for (const { entry, once } of op.entries) {
            program.push(
              entry.at,
              entry.points,
              argv.push(JSON.stringify(entry)),
              once === undefined ? 0 : once.field,
              once === undefined ? 0 : once.ttl,
            )
          }
          program.push(op.thresholds.length)
          for (const t of op.thresholds) program.push(t.level, t.field, t.ttl)
          break
        case 'read':
          program.push(OP_READ, ledger(op.key, op.field), op.since)
          break
      }
    }
  }
  program[0] = oldest
  return { keys, argv: [pack(program), ...argv.slice(1)] }
}

let scratch = Buffer.allocUnsafe(16 * 1024)

/**
 * The program as a MessagePack array of numbers and strings: Lua's cmsgpack.unpack
 * reads it in less than half the time cjson.decode takes for the same array as JSON,
 * and in Redis, the bottleneck, every microsecond per batch counts. Integers that fit
 * 32 bits take their shortest encoding, everything else (timestamps) a float64,
 * exact below 2^53.
 */
const pack = (program: readonly (number | string)[]): Buffer => {
  let buf = scratch
  let pos = 0
  const room = (n: number): void => {
    if (pos + n <= buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + n))
    buf.copy(bigger, 0, 0, pos)
    buf = bigger
    scratch = bigger
  }
  room(5)
  buf[pos++] = 0xdd // array 32
  buf.writeUInt32BE(program.length, pos)
  pos += 4
  for (const value of program) {
    if (typeof value === 'string') {
      const length = Buffer.byteLength(value)
      room(5 + length)
      if (length < 32) buf[pos++] = 0xa0 | length
      else {
        buf[pos++] = 0xdb // str 32
        buf.writeUInt32BE(length, pos)
        pos += 4
      }
      pos += buf.write(value, pos)
    } else if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
      room(5)
      if (value < 128) buf[pos++] = value
      else {
        buf[pos++] = 0xce // uint 32
        buf.writeUInt32BE(value, pos)
        pos += 4
      }
    } else if (Number.isInteger(value) && value < 0 && value >= -0x80000000) {
      room(5)
      if (value >= -32) buf[pos++] = value & 0xff
      else {
        buf[pos++] = 0xd2 // int 32
        buf.writeInt32BE(value, pos)
        pos += 4
      }
    } else {
      room(9)
      buf[pos++] = 0xcb // float 64
      buf.writeDoubleBE(value, pos)
      pos += 8
    }
  }
  // A copy: ioredis may keep the buffer queued on the socket while the scratch is reused.
  return Buffer.from(buf.subarray(0, pos))
}

/**
 * Reads one batch's answers from the reply (the script's comma-separated list of JSON
 * values, each op's answer in order: see redis.lua.ts) into the contract's results, the
 * same shapes the memory store answers; returns where the next batch's answers start.
 */
const decode = (ops: readonly StoreOp[], raw: readonly unknown[], cursor: number, results: StoreResult[]): number => {
  const num = (i: number): number => raw[i] as number
  let r = cursor
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as StoreOp
    switch (op.op) {
      case 'hit':
        results[i] = { count: num(r), distinct: num(r + 1), member: num(r + 2) } satisfies HitResult
        r += 3
        break
      case 'reset':
      case 'move':
        results[i] = null
        break
      case 'claim':
      case 'marked':
        results[i] = raw[r++] === 1
        break
      case 'remember':
        results[i] = { seen: raw[r] === 1, size: num(r + 1) } satisfies RememberResult
        r += 2
        break
      case 'score': {
        // The caller's own entry objects, as the memory store answers.
        const added: LedgerEntry[] = new Array(num(r))
        for (let j = 0; j < added.length; j++) added[j] = (op.entries[num(r + 1 + j)] as ScoredEntry).entry
        r += 1 + added.length
        const sum = num(r++)
        const crossed: number[] = new Array(num(r))
        for (let j = 0; j < crossed.length; j++) crossed[j] = (op.thresholds[num(r + 1 + j)] as Threshold).level
        r += 1 + crossed.length
        if (crossed.length > 1) crossed.sort((a, b) => a - b)
        results[i] = { added, sum, crossed } satisfies ScoreResult
        break
      }
      case 'read': {
        const entries = raw.slice(r + 1, r + 1 + num(r)) as LedgerEntry[]
        r += 1 + entries.length
        results[i] = entries
        break
      }
    }
  }
  return r
}
