import type { Identity } from '../event.js'
import type { RiskAlert } from '../risk/alert.js'
import type { createRiskEngine } from '../risk/engine.js'
import type { RiskSnapshot } from '../risk/ledger.js'
import type { EventSummary, HubViews, UserView } from './views.js'

/** Only `createRiskEngine`'s public surface is used: its internals and the Store's entry types are not a contract. */
type RiskEngine = ReturnType<typeof createRiskEngine>
/** A ledger entry as `engine.risk()` returns it. */
type LedgerEntry = Awaited<ReturnType<RiskEngine['risk']>>['entries'][number]

/** One row of the users lists. */
export interface UserRow {
  readonly userKey: string
  readonly identity: Identity
  readonly score: number
  readonly rise24h: number
  readonly firstSeen: string
  readonly lastSeen: string
  readonly succeeded: number
  readonly failed: number
  readonly other: number
}

/** A point of a score history (a sparkline): the standing score at `at`. */
export interface ScorePoint {
  readonly at: string
  readonly score: number
}

export interface UserDetail extends UserRow {
  /** Ledger entries (detections), newest first. */
  readonly entries: readonly (Omit<LedgerEntry, 'at'> & { readonly at: string })[]
  /** Recent events, newest first. */
  readonly events: readonly EventSummary[]
  readonly alerts: readonly RiskAlert[]
  readonly history: readonly ScorePoint[]
}

export interface QueryConfig {
  readonly halfLifeMs: number
  readonly maxScore: number
  readonly clock: () => number
}

/** A user's cached risk older than this is read again before it is shown. */
const STALE_MS = 60_000

/** Risk reads in flight at once when the lists refresh (a shared store takes them in one call per turn). */
const READS_AT_ONCE = 64
const HOUR = 3_600_000
const DAY = 24 * HOUR
const HISTORY_POINTS = 48

const round = (n: number): number => Math.round(n * 100) / 100

/**
 * The standing score at time `t` from ledger entries: each entry's points halved
 * every `halfLifeMs`, capped. The engine owns the real computation (its internals
 * are not a contract); this redoes the documented formula for past instants, and
 * spec/hub.api.spec.ts checks the last point equals `engine.risk().score`.
 */
export const scoreAt = (entries: readonly LedgerEntry[], t: number, config: QueryConfig): number => {
  let score = 0
  for (const e of entries) if (e.at <= t) score += e.points * 2 ** (-(t - e.at) / config.halfLifeMs)
  return round(Math.min(config.maxScore, score))
}

/**
 * The score over the last days, in `HISTORY_POINTS` steps ending now: over 7 days
 * for a user with old entries, down to the last hour for a user whose story just
 * began (so a fresh attack is a visible rise, not a spike at the edge).
 */
export const history = (entries: readonly LedgerEntry[], now: number, config: QueryConfig): ScorePoint[] => {
  const oldest = entries.reduce((min, e) => Math.min(min, e.at), now)
  const span = Math.min(7 * DAY, Math.max(HOUR, (now - oldest) * 1.25))
  const points: ScorePoint[] = []
  for (let i = 0; i < HISTORY_POINTS; i++) {
    const t = now - span + (span * i) / (HISTORY_POINTS - 1)
    points.push({ at: new Date(Math.round(t)).toISOString(), score: scoreAt(entries, t, config) })
  }
  return points
}

const row = (v: UserView): UserRow => ({
  userKey: v.userKey,
  identity: v.identity,
  score: v.score,
  rise24h: v.rise24h,
  firstSeen: new Date(v.firstSeen).toISOString(),
  lastSeen: new Date(v.lastSeen).toISOString(),
  succeeded: v.succeeded,
  failed: v.failed,
  other: v.other,
})

const compareKeys = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export interface Queries {
  /** Users with a score (or a rise), best first: `limit` of them from `offset`, and how many there are. */
  users(sort: 'score' | 'rise', limit: number, offset?: number): Promise<{ users: UserRow[]; total: number }>
  user(userKey: string): Promise<UserDetail | undefined>
  alerts(limit: number): RiskAlert[]
  /** Sparkline points for several users at once (the overview table). */
  histories(userKeys: readonly string[]): Promise<Map<string, ScorePoint[]>>
}

/**
 * The store could not be read (`engine.risk()` answered `unavailable`): for the hub an error
 * (503), not a user without a record, so no score is cached and no user reported missing.
 */
export class StoreUnavailableError extends Error {
  constructor() {
    super('the store could not be read')
    this.name = 'StoreUnavailableError'
  }
}

export const createQueries = (engine: RiskEngine, views: HubViews, config: QueryConfig): Queries => {
  let refreshing: Promise<void> | undefined

  const riskOf = async (userKey: string): Promise<RiskSnapshot> => {
    const risk = await engine.risk(userKey)
    if (risk.unavailable) throw new StoreUnavailableError()
    return risk
  }

  /** Re-reads the risk of users with new events (or stale numbers), READS_AT_ONCE at a time. */
  const refreshDue = async (): Promise<void> => {
    const now = config.clock()
    const due: UserView[] = []
    for (const v of views.users()) if (v.dirty || now - v.refreshedAt > STALE_MS) due.push(v)
    // READS_AT_ONCE reads in flight, not one at a time: with a shared store every read is a
    // round trip, and 10,000 users read one after the other held every dashboard view for
    // over a second on a local Redis (the store sends concurrent reads in one script call).
    let next = 0
    let failure: { err: unknown } | undefined
    const reader = async (): Promise<void> => {
      while (next < due.length && failure === undefined) {
        const v = due[next++] as UserView
        // Cleared before the read, not after: an event scored while it is in flight marks
        // the view again, and that mark must survive this refresh.
        const dirty = v.dirty
        v.dirty = false
        let risk: RiskSnapshot
        try {
          risk = await riskOf(v.userKey)
        } catch (err) {
          v.dirty ||= dirty
          failure ??= { err }
          return
        }
        v.score = risk.score
        v.rise24h = risk.rise24h
        v.refreshedAt = now
      }
    }
    const readers: Promise<void>[] = []
    for (let i = 0; i < Math.min(READS_AT_ONCE, due.length); i++) readers.push(reader())
    await Promise.all(readers)
    if (failure !== undefined) throw failure.err
  }

  /** Re-reads the risk of users with new events (or stale numbers). One refresh at a time, shared. */
  const refresh = (): Promise<void> => {
    // Reset in a `finally` callback, which always runs after this assignment (an async
    // function with nothing to await would otherwise finish before it).
    refreshing ??= refreshDue().finally(() => {
      refreshing = undefined
    })
    return refreshing
  }

  return {
    async users(sort, limit, offset = 0) {
      await refresh()
      const rows: UserView[] = []
      for (const v of views.users()) if (sort === 'score' ? v.score > 0 : v.rise24h > 0) rows.push(v)
      // Ties broken by key: a stable order, so that pages read one after the other neither
      // repeat nor skip a user whose numbers did not change in between.
      rows.sort((a, b) =>
        sort === 'score'
          ? b.score - a.score || b.rise24h - a.rise24h || compareKeys(a.userKey, b.userKey)
          : b.rise24h - a.rise24h || b.score - a.score || compareKeys(a.userKey, b.userKey),
      )
      return { users: rows.slice(offset, offset + limit).map(row), total: rows.length }
    },
    async user(userKey) {
      const view = views.user(userKey)
      // Cleared before the read, as in `refreshDue`.
      const dirty = view?.dirty ?? false
      if (view) view.dirty = false
      let risk: RiskSnapshot
      try {
        risk = await riskOf(userKey)
      } catch (err) {
        if (view) view.dirty ||= dirty
        throw err
      }
      if (view === undefined && risk.entries.length === 0) return undefined
      const now = config.clock()
      const base: UserRow = view
        ? row(view)
        : {
            userKey,
            identity: {},
            score: 0,
            rise24h: 0,
            firstSeen: new Date(risk.entries[0]?.at ?? now).toISOString(),
            lastSeen: new Date(risk.entries.at(-1)?.at ?? now).toISOString(),
            succeeded: 0,
            failed: 0,
            other: 0,
          }
      if (view) {
        view.score = risk.score
        view.rise24h = risk.rise24h
        view.refreshedAt = now
      }
      return {
        ...base,
        score: risk.score,
        rise24h: risk.rise24h,
        entries: [...risk.entries].reverse().map((e) => ({ ...e, at: new Date(e.at).toISOString() })),
        events: view ? [...view.events].reverse() : [],
        alerts: views.alerts(50, userKey),
        history: history(risk.entries, now, config),
      }
    },
    alerts(limit) {
      return views.alerts(limit)
    },
    async histories(userKeys) {
      const now = config.clock()
      const out = new Map<string, ScorePoint[]>()
      for (const key of userKeys) out.set(key, history((await riskOf(key)).entries, now, config))
      return out
    },
  }
}
