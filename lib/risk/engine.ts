import { randomUUID } from 'node:crypto'
import type { Diagnostics } from '../diagnostics.js'
import { type AuthEvent, eventTime } from '../event.js'
import type { LedgerEntry, ScoreResult, Store, StoreOp, StoreResult, Threshold } from '../store/store.js'
import type { RiskAlert } from './alert.js'
import { DirectOps, OpList, type OpSink, type SyncStore } from './batch.js'
import { type Decision, decide, fields, type Plan, planEvent } from './detectors.js'
import { displayIp, type IpFacts, type IpRef } from './ip.js'
import { decayedPoints, type LedgerMaths, type RiskSnapshot, snapshot, standingScore } from './ledger.js'
import { type PointsTable, RULES } from './points.js'
import type { RiskTrigger } from './trigger.js'

export interface RiskEngineConfig {
  readonly store: Store
  readonly points: PointsTable
  readonly trigger: RiskTrigger | undefined
  readonly halfLifeMs: number
  readonly maxScore: number
  readonly clock: () => number
  /** Called with every alert the trigger fires; must not throw (the engine guards it anyway). */
  readonly onAlert: (alert: RiskAlert) => void
  /**
   * Called after each scored event with the user's new standing score, its decayed points
   * before the cap (for enforcement: the capped score would end a block early), and the
   * points it will have at a later time, as long as nothing else is scored: decayed, and
   * without the entries that will have passed the ledger's retention by then.
   */
  readonly onScore?: (
    userKey: string,
    score: number,
    uncapped: number,
    pointsAt: (at: number) => number,
    event: ScoredEvent,
  ) => void
  /** How an IP is keyed in the store; the address or prefix itself by default (advanced mode: `keyedIpRef`). */
  readonly ipRef?: (facts: IpFacts) => IpRef
}

/** What an event did to its user's ledger, for `onScore` (the block list's forgiveness: lib/enforcement.ts). */
export interface ScoredEvent {
  /** The attempted login's key whose failures this success merged into the user's ledger, if any. */
  readonly mergedFrom: string | undefined
  /** The points this event added. */
  readonly added: number
  /** A wrong password (`login.failed`, `invalid_credentials`): someone is guessing again. */
  readonly failed: boolean
  /** The points now of the ledger's entries dated at or before `cutoff`. */
  readonly pointsUntil: (cutoff: number) => number
}

/** The scoring settings of a resolved configuration (the middleware's or the hub's: the same names). */
export type ScoringSettings = Pick<RiskEngineConfig, 'points' | 'trigger' | 'halfLifeMs' | 'maxScore' | 'clock'>

/** Picks the scoring settings out of a resolved configuration. */
export const scoringSettings = (config: ScoringSettings): ScoringSettings => ({
  points: config.points,
  trigger: config.trigger,
  halfLifeMs: config.halfLifeMs,
  maxScore: config.maxScore,
  clock: config.clock,
})

export interface RiskEngine {
  /**
   * Scores one event. Never throws or rejects (store errors are counted and logged).
   * With a store that answers synchronously (the memory store) it completes
   * synchronously and returns `undefined`; otherwise it returns a promise.
   */
  process(event: AuthEvent): Promise<void> | undefined
  risk(userKey: string): Promise<RiskSnapshot>
}

/** Entries are kept this long and at most this many per user. */
export const RETENTION = 30 * RULES.DAY
const MAX_ENTRIES = 256

const hasApplySync = (store: Store): store is Store & SyncStore =>
  typeof (store as Partial<SyncStore>).applySync === 'function'

const NO_RESULTS: readonly StoreResult[] = []

export const createRiskEngine = (config: RiskEngineConfig, diag: Diagnostics): RiskEngine => {
  const { store, points, trigger } = config
  const windowMs = trigger?.withinMs ?? RULES.DAY
  const maths: LedgerMaths = { halfLifeMs: config.halfLifeMs, maxScore: config.maxScore, windowMs }
  const levels = trigger ? [trigger.points, ...trigger.escalate] : []
  // The memory store answers each operation at once: no operation objects, no promise per step.
  const direct = hasApplySync(store) ? new DirectOps(store) : undefined

  /** Runs a batch on the store (the asynchronous path) and continues with its results. */
  const step = <T>(ops: readonly StoreOp[], now: number, then: (r: readonly StoreResult[]) => T): Promise<Awaited<T>> =>
    (ops.length === 0 ? Promise.resolve(then(NO_RESULTS)) : store.run(ops, now).then(then)) as Promise<Awaited<T>>

  // The same for every user (marks are fields of the user's key): built once.
  const thresholds: readonly Threshold[] = levels.map((level) => ({ level, field: fields.alert(level), ttl: windowMs }))
  const alertFields: readonly string[] = thresholds.map((t) => t.field)

  const BRUTE_FORCE_MARK = fields.once('brute_force')

  const readLedger = (u: string, now: number): StoreOp[] => [
    { op: 'read', key: u, field: fields.ledger, since: now - RETENTION },
  ]

  /**
   * The alert for a crossing. `entries` is the user's ledger, read after the score; when
   * that read failed (`partial`), the crossing's mark is already claimed, so this is the
   * only alert the window will get: it is built from the score's own answer instead (the
   * exact rise, the entries this event added, a standing score from those alone).
   */
  const alertFrom = (
    event: AuthEvent,
    u: string,
    level: number,
    now: number,
    entries: readonly LedgerEntry[],
    partialRise: number | undefined,
    takeover: boolean,
  ): void => {
    const inWindow = entries.filter((e) => e.at > now - windowMs)
    const ip = displayIp(event.ip)
    const alert: RiskAlert = {
      type: 'user.risk.increased',
      id: randomUUID(),
      at: new Date(now).toISOString(),
      userKey: u,
      identity: event.identity,
      level,
      escalation: level !== trigger?.points,
      rise: Math.round((partialRise ?? inWindow.reduce((sum, e) => sum + e.points, 0)) * 100) / 100,
      windowMs,
      score: standingScore(entries, now, maths),
      detections: inWindow.map((e) => ({
        detection: e.detection,
        points: e.points,
        at: new Date(e.at).toISOString(),
        ...(e.evidence ? { evidence: e.evidence } : {}),
      })),
      ...(ip === undefined ? {} : { ip }),
      ...(partialRise === undefined ? {} : { partial: true as const }),
      ...(takeover ? { takeover: true as const } : {}),
    }
    diag.count('alerts')
    try {
      config.onAlert(alert)
    } catch (err) {
      diag.error('alert_dispatch_failed', 'an alert could not be handed to its channels', err)
    }
  }

  /**
   * The second batch: merge a login into its user, append the user's entries and claim any
   * threshold crossed, flag an IP, move the login's failures and once-marks to the user.
   * Answers the index of the score's result (-1 without one).
   */
  const scoreInto = (sink: OpSink, plan: Plan, decision: Decision, now: number): number => {
    const u = plan.event.userKey
    const alias = plan.alias
    if (alias !== undefined && u !== null) {
      // Before the score, so the trigger counts the login's entries and sees its alert marks.
      // The ledger moves in one op, even when the facts batch saw it empty: a read there and
      // a write here would let two successes of one login at once both merge it (two
      // processes, or the hub's batches), and a failure scored in between would be lost.
      sink.move(alias, fields.ledger, u)
      // The user inherits every alert the login already raised (base and escalations). All
      // of them, not those the facts batch saw: the login may cross a level on another
      // process in between, and its entries come over here, so its mark must too (a move of
      // a mark the login does not hold does nothing).
      for (const field of alertFields) sink.move(alias, field, u)
      for (const field of decision.forget) sink.reset(alias, field)
    }
    let scoreAt = -1
    if (u !== null && (decision.entries.length > 0 || decision.merging || decision.held)) {
      scoreAt = sink.score(
        u,
        fields.ledger,
        decision.entries,
        now - RETENTION,
        MAX_ENTRIES,
        RETENTION,
        now - windowMs,
        thresholds,
      )
    }
    if (decision.flagIp !== undefined) sink.claim(decision.flagIp, fields.flagged, RULES.DAY)
    // The login's brute-force mark stays with the login (see CARRY_ALIAS); the user gets one
    // too, so that the failures that come over do not score a second brute force for them.
    if (alias !== undefined && u !== null && decision.bruteForceMerged) sink.claim(u, BRUTE_FORCE_MARK, RULES.DAY)
    // After the score: the login's once-marks must not hold back the success's own entries.
    if (alias !== undefined && u !== null) for (const field of decision.carry) sink.move(alias, field, u)
    return scoreAt
  }

  /**
   * Whether the score added a takeover: a success right after a brute force. Read from what
   * the score op added, not from what was offered: the entry carries a once-a-day mark that
   * the store claims atomically, so exactly one process, once a day, sees it added.
   */
  const tookOver = (score: ScoreResult): boolean => {
    for (const entry of score.added) if (entry.detection === 'success_after_brute_force') return true
    return false
  }

  /**
   * The level a takeover alerts at, when the score crossed none (see `afterScore`): the
   * highest the window's rise is above; none when it is not above the first, or when the
   * score added no takeover.
   */
  const takeoverLevel = (score: ScoreResult): number | undefined => {
    if (levels.length === 0 || !tookOver(score)) return undefined
    let above: number | undefined
    for (const l of levels) if (score.sum > l && (above === undefined || l > above)) above = l
    return above
  }

  /** Whether what follows a score needs the user's ledger: an alert to explain, or a score to report. */
  const wantsLedger = (event: AuthEvent, score: ScoreResult | undefined): boolean =>
    event.userKey !== null &&
    score !== undefined &&
    (score.crossed.length > 0 || config.onScore !== undefined || takeoverLevel(score) !== undefined)

  const afterScore = (
    event: AuthEvent,
    now: number,
    score: ScoreResult | undefined,
    ledger: readonly LedgerEntry[] | undefined,
  ): void => {
    const u = event.userKey
    if (u === null || score === undefined) return
    diag.count('detections', score.added.length)
    if (ledger === undefined) return
    // Several levels crossed at once (a big jump) make one alert, at the highest.
    // A takeover alerts even when this window's alert was already sent, typically for the
    // brute force itself (under the login's key, whose marks the user inherits, or the
    // user's own): that alert said someone was guessing, this one that they got in.
    const level = score.crossed[score.crossed.length - 1] ?? takeoverLevel(score)
    if (level !== undefined) alertFrom(event, u, level, now, ledger, undefined, tookOver(score))
    if (config.onScore !== undefined) {
      const uncapped = decayedPoints(ledger, now, maths)
      const pointsAt = (at: number): number =>
        decayedPoints(
          ledger.filter((e) => e.at > at - RETENTION),
          at,
          maths,
        )
      let added = 0
      for (const entry of score.added) added += entry.points
      config.onScore(u, standingScore(ledger, now, maths), uncapped, pointsAt, {
        mergedFrom: event.type === 'login.succeeded' && event.loginKey !== u ? event.loginKey : undefined,
        added,
        failed: event.type === 'login.failed' && event.reason === 'invalid_credentials',
        pointsUntil: (cutoff) =>
          decayedPoints(
            ledger.filter((e) => e.at <= cutoff),
            now,
            maths,
          ),
      })
    }
  }

  /**
   * The ledger read after a crossing failed (a Redis blip between the score's batch and
   * the read): the score op has claimed the level's mark, so no other event or process
   * will alert for this user in this window. The alert goes out anyway, from what the
   * score answered, marked `partial`. (The score op itself does not return the ledger:
   * that would ship it back on every crossing-free event too, or need a second op kind.)
   */
  const partialAlert = (event: AuthEvent, now: number, score: ScoreResult): void => {
    diag.count('detections', score.added.length)
    const level = score.crossed[score.crossed.length - 1] ?? takeoverLevel(score)
    if (level !== undefined)
      alertFrom(event, event.userKey as string, level, now, score.added, score.sum, tookOver(score))
  }

  /** The memory store's path: the same steps as `processAsync`, each operation answered at once. */
  const processDirect = (shared: DirectOps, event: AuthEvent, now: number): void => {
    // Alerts and scores are reported after the batches, so a listener that scores an event
    // itself finds the shared sink free; a fresh one covers anything else re-entering.
    const sink = shared.busy ? new DirectOps(shared.store) : shared
    let score: ScoreResult | undefined
    let ledger: readonly LedgerEntry[] | undefined
    let readFailed = false
    let readError: unknown
    try {
      const plan = planEvent(event, now, now - RETENTION, sink.begin(now), config.ipRef)
      const decision = decide(plan, sink.results, points)
      const scoreAt = scoreInto(sink.begin(now), plan, decision, now)
      score = scoreAt === -1 ? undefined : (sink.results[scoreAt] as ScoreResult)
      if (wantsLedger(event, score)) {
        try {
          ledger = sink.results[sink.read(event.userKey as string, fields.ledger, now - RETENTION)] as LedgerEntry[]
        } catch (err) {
          readFailed = true
          readError = err
        }
      }
    } finally {
      sink.end()
    }
    if (!readFailed) {
      afterScore(event, now, score, ledger)
      return
    }
    partialAlert(event, now, score as ScoreResult)
    throw readError
  }

  const processAsync = (event: AuthEvent, now: number): Promise<void> => {
    const facts = new OpList()
    const plan = planEvent(event, now, now - RETENTION, facts, config.ipRef)
    return step(facts.ops, now, (r) => {
      const batch = new OpList()
      const scoreAt = scoreInto(batch, plan, decide(plan, r, points), now)
      return step(batch.ops, now, (results): void | Promise<void> => {
        const score = scoreAt === -1 ? undefined : (results[scoreAt] as ScoreResult)
        if (!wantsLedger(event, score)) return afterScore(event, now, score, undefined)
        return store.run(readLedger(event.userKey as string, now), now).then(
          ([entries]) => afterScore(event, now, score, entries as readonly LedgerEntry[]),
          (err: unknown) => {
            partialAlert(event, now, score as ScoreResult)
            // Still a store error: counted and logged like any other.
            throw err
          },
        )
      })
    })
  }

  const processEvent = (event: AuthEvent): void | Promise<void> => {
    const parsed = eventTime(event.at)
    const now = Number.isFinite(parsed) ? parsed : config.clock()
    if (direct !== undefined) return processDirect(direct, event, now)
    return processAsync(event, now)
  }

  // A store outage is logged once per outage, not once per process: the first event
  // scored after failures re-arms the log line for the next outage.
  let failing = false
  const failed = (err: unknown): void => {
    failing = true
    diag.count('store_errors')
    diag.error('risk_failed', 'an event could not be scored (store unavailable?); the login was not affected', err)
  }
  const scored = (): void => {
    if (!failing) return
    failing = false
    diag.rearm('risk_failed')
  }

  return {
    process(event) {
      try {
        const pending = processEvent(event)
        if (pending === undefined) {
          if (failing) scored()
          return undefined
        }
        return pending.then(scored, failed)
      } catch (err) {
        failed(err)
        return undefined
      }
    },
    async risk(userKey) {
      const now = config.clock()
      try {
        const [entries] = await store.run(readLedger(userKey, now), now)
        return snapshot(userKey, (entries as readonly LedgerEntry[]) ?? [], now, maths)
      } catch (err) {
        // Fail open here too: an application asking in a route must not get a store's error.
        diag.count('store_errors')
        diag.error(
          'risk_read_failed',
          "a user's risk could not be read (store unavailable?); an empty snapshot marked unavailable was returned",
          err,
        )
        return { ...snapshot(userKey, [], now, maths), unavailable: true }
      }
    },
  }
}
