/**
 * The `Store` contract: where the risk engine keeps counters, once-per-window
 * marks and each user's ledger. It is deliberately small and generic (the
 * detectors, not the store, know what a brute force is) and batch-shaped: the
 * engine sends every operation one event needs in one `run()` call, which the
 * memory store answers synchronously and the Redis store executes as one
 * atomic script, so a batch never interleaves with another process's batch.
 *
 * Every op addresses a `field` of a `key`. The key is the owner of the state (a
 * user's `userKey`, or an IP prefix) and the field names one datum of it (its
 * failure window, its ledger, a once-mark). Each field is independent (its own
 * kind and expiry); the grouping lets a store keep one record per owner, so one
 * event costs one or two lookups instead of one per datum (the memory store), or
 * lets it hash-tag an owner's keys together (Redis).
 *
 * Keys never contain personal data in advanced mode: they are `userKey`s
 * (already past the identity boundary) and truncated IP prefixes.
 */

/** One point entry of a user's ledger: which detection added how many points, when and why. */
export interface LedgerEntry {
  readonly detection: string
  readonly points: number
  /** Epoch milliseconds. */
  readonly at: number
  /** Non-personal facts that explain the entry (counts, truncated IP, strategy, event name). */
  readonly evidence?: Readonly<Record<string, string | number>>
}

/**
 * A sliding window counts at most its most recent `WINDOW_CAP` hits: counts
 * saturate there. Every detection threshold is far below it, and the cap keeps
 * a hot key (one IP hammering a login page) cheap in every store.
 */
export const WINDOW_CAP = 128

/** `distinct` saturates at this many members (thresholds need at most a handful). */
export const DISTINCT_CAP = 16

export type StoreOp =
  /**
   * Sliding window: optionally add one hit (with an optional member) and count hits
   * after `since`. `distinct` and `member` are computed only when the op names a
   * `member` (otherwise both are 0): counting members costs a pass over the window.
   */
  | {
      readonly op: 'hit'
      readonly key: string
      readonly field: string
      readonly add: boolean
      readonly since: number
      readonly ttl: number
      readonly member?: string | undefined
    }
  /** Forget a field (of any kind). */
  | { readonly op: 'reset'; readonly key: string; readonly field: string }
  /**
   * Move a window, a mark or a ledger from `key` to `to` (the same field), merged with
   * what `to` holds there: a window's hits are combined in time order (its most recent
   * `WINDOW_CAP` kept, members with them), a ledger's entries in time order (at equal
   * times the entries `to` already held first; a following `score` trims it), a mark
   * keeps the later expiry, and each keeps the later of the two expiries. The field is
   * then gone from `key`. A login's failures and ledger, recorded before the login was
   * known to be a user's, join the user's own. Being one op, a ledger moved by two
   * batches at once (two successes of one login on two processes) is merged once: a
   * ledger read in one batch and written to the user in the next was merged by both.
   */
  | { readonly op: 'move'; readonly key: string; readonly field: string; readonly to: string }
  /** Set a mark if absent: `true` for the one caller that set it. Once-per-window detections and alerts use it. */
  | { readonly op: 'claim'; readonly key: string; readonly field: string; readonly ttl: number }
  /** Whether a mark is set (and not expired). */
  | { readonly op: 'marked'; readonly key: string; readonly field: string }
  /**
   * Record a value among the last `max` values written to the field (repeats counted: the
   * last 20 successes, not the last 20 distinct devices); answers whether it was among
   * them and how many values were recorded before it (at most `max`, if every call gives the same `max`).
   */
  | {
      readonly op: 'remember'
      readonly key: string
      readonly field: string
      readonly value: string
      readonly max: number
      readonly ttl: number
    }
  /**
   * Score: append entries to a ledger (an entry with `once` is added only by the caller
   * that claims its mark) keeping it ordered by `at` (merged entries may be older than
   * the last one), keep at most `max` entries (the newest) and none older than `keepSince`,
   * then sum the points after `windowSince` and claim each threshold mark whose level
   * that sum exceeds. One op, so "crossed the threshold" is decided exactly once even
   * when several processes score the same user at the same time. The once-marks and
   * threshold marks are fields of the same key as the ledger.
   */
  | {
      readonly op: 'score'
      readonly key: string
      readonly field: string
      readonly entries: readonly ScoredEntry[]
      readonly keepSince: number
      readonly max: number
      readonly ttl: number
      readonly windowSince: number
      readonly thresholds: readonly Threshold[]
    }
  /** Read a ledger's entries after `since`, oldest first. */
  | { readonly op: 'read'; readonly key: string; readonly field: string; readonly since: number }

export interface ScoredEntry {
  readonly entry: LedgerEntry
  /** A once-per-window mark (a field of the ledger's key): the entry is added only if this call sets it. */
  readonly once?: { readonly field: string; readonly ttl: number }
}

/** A level and the mark (a field of the ledger's key) that records it was crossed. */
export interface Threshold {
  readonly level: number
  readonly field: string
  readonly ttl: number
}

export interface ScoreResult {
  /** The entries actually added (once-marks already set elsewhere drop theirs). */
  readonly added: readonly LedgerEntry[]
  /** Sum of points after `windowSince`, including what was just added. */
  readonly sum: number
  /** Threshold levels whose marks this call set, ascending. */
  readonly crossed: readonly number[]
}

export interface HitResult {
  /** Hits after `since`, saturating at `WINDOW_CAP`. */
  readonly count: number
  /** Distinct members among the counted hits, saturating at `DISTINCT_CAP` (0 without an op `member`). */
  readonly distinct: number
  /** Counted hits whose member is the op's `member` (0 without one). */
  readonly member: number
}

export interface RememberResult {
  readonly seen: boolean
  readonly size: number
}

/** The answer to each op, in order: hit -> HitResult, claim/marked -> boolean, remember -> RememberResult, score -> ScoreResult, read -> LedgerEntry[], reset/move -> null. */
export type StoreResult = HitResult | boolean | RememberResult | ScoreResult | readonly LedgerEntry[] | null

export interface Store {
  /** Runs the ops in order, atomically with respect to other `run` calls. `now` is epoch ms. */
  run(ops: readonly StoreOp[], now: number): Promise<StoreResult[]>
  /** Releases timers and connections. */
  close(): Promise<void>
}
