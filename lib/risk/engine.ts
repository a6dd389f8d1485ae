import { randomUUID } from 'node:crypto'
import type { Diagnostics } from '../diagnostics.js'
import { type AuthEvent, eventTime } from '../event.js'
import type { LedgerEntry, ScoredEntry, ScoreResult, Store, StoreOp, StoreResult, Threshold } from '../store/store.js'
import type { RiskAlert } from './alert.js'
import { type Decision, decide, fields, type Plan, planEvent } from './detectors.js'
import { displayIp } from './ip.js'
import { type LedgerMaths, type RiskSnapshot, snapshot, standingScore } from './ledger.js'
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
  /** Called after each scored event with the user's new standing score (for enforcement). */
  readonly onScore?: (userKey: string, score: number) => void
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

/** A store the engine can drive without promises (the memory store). */
interface SyncStore {
  runSync(ops: readonly StoreOp[], now: number): StoreResult[]
}

const hasRunSync = (store: Store): store is Store & SyncStore =>
  typeof (store as Partial<SyncStore>).runSync === 'function'

const NO_RESULTS: readonly StoreResult[] = []

export const createRiskEngine = (config: RiskEngineConfig, diag: Diagnostics): RiskEngine => {
  const { store, points, trigger } = config
  const windowMs = trigger?.withinMs ?? RULES.DAY
  const maths: LedgerMaths = { halfLifeMs: config.halfLifeMs, maxScore: config.maxScore, windowMs }
  const levels = trigger ? [trigger.points, ...trigger.escalate] : []
  const alertField = fields.alert(trigger?.points ?? Number.POSITIVE_INFINITY)
  const sync = hasRunSync(store) ? store : undefined

  /**
   * Runs a batch and continues with its results: synchronously with the memory
   * store (no promise per step, which is most of the cost at 200k events/s),
   * through a promise otherwise.
   */
  const step = <T>(
    ops: readonly StoreOp[],
    now: number,
    then: (r: readonly StoreResult[]) => T,
  ): T | Promise<Awaited<T>> => {
    if (ops.length === 0) return then(NO_RESULTS)
    if (sync) return then(sync.runSync(ops, now))
    return store.run(ops, now).then(then) as Promise<Awaited<T>>
  }

  // The same for every user (marks are fields of the user's key): built once.
  const thresholds: readonly Threshold[] = levels.map((level) => ({ level, field: fields.alert(level), ttl: windowMs }))

  const readLedger = (u: string, now: number): StoreOp[] => [
    { op: 'read', key: u, field: fields.ledger, since: now - RETENTION },
  ]

  const alertFrom = (
    event: AuthEvent,
    u: string,
    level: number,
    now: number,
    entries: readonly LedgerEntry[],
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
      rise: Math.round(inWindow.reduce((sum, e) => sum + e.points, 0) * 100) / 100,
      windowMs,
      score: standingScore(entries, now, maths),
      detections: inWindow.map((e) => ({
        detection: e.detection,
        points: e.points,
        at: new Date(e.at).toISOString(),
        ...(e.evidence ? { evidence: e.evidence } : {}),
      })),
      ...(ip === undefined ? {} : { ip }),
    }
    diag.count('alerts')
    try {
      config.onAlert(alert)
    } catch (err) {
      diag.error('alert_dispatch_failed', 'an alert could not be handed to its channels', err)
    }
  }

  /** The second batch: append the user's entries and claim any threshold crossed, flag an IP, forget a merged login. */
  const scoreOps = (plan: Plan, decision: Decision, now: number): { ops: StoreOp[]; scoreAt: number } => {
    const u = plan.event.userKey
    const ops: StoreOp[] = []
    let scoreAt = -1
    if (u !== null && (decision.entries.length > 0 || decision.merged.length > 0)) {
      // A user inherits the alert already sent for the login it was attacked under.
      if (decision.inheritAlert && trigger) ops.push({ op: 'claim', key: u, field: alertField, ttl: windowMs })
      const entries: ScoredEntry[] =
        decision.merged.length === 0
          ? decision.entries
          : [...decision.merged.map((entry) => ({ entry })), ...decision.entries]
      scoreAt =
        ops.push({
          op: 'score',
          key: u,
          field: fields.ledger,
          entries,
          keepSince: now - RETENTION,
          max: MAX_ENTRIES,
          ttl: RETENTION,
          windowSince: now - windowMs,
          thresholds,
        }) - 1
    }
    if (decision.flagIp !== undefined) {
      ops.push({ op: 'claim', key: decision.flagIp, field: fields.flagged, ttl: RULES.DAY })
    }
    const alias = plan.alias
    if (alias !== undefined) for (const field of decision.forget) ops.push({ op: 'reset', key: alias, field })
    return { ops, scoreAt }
  }

  const afterScore = (event: AuthEvent, now: number, score: ScoreResult | undefined): void | Promise<void> => {
    const u = event.userKey
    if (u === null || score === undefined) return
    diag.count('detections', score.added.length)
    // Several levels crossed at once (a big jump) make one alert, at the highest.
    const level = score.crossed[score.crossed.length - 1]
    if (level === undefined && !config.onScore) return
    return step(readLedger(u, now), now, ([entries]) => {
      const ledger = entries as readonly LedgerEntry[]
      if (level !== undefined) alertFrom(event, u, level, now, ledger)
      config.onScore?.(u, standingScore(ledger, now, maths))
    })
  }

  const processEvent = (event: AuthEvent): void | Promise<void> => {
    const parsed = eventTime(event.at)
    const now = Number.isFinite(parsed) ? parsed : config.clock()
    const plan = planEvent(event, now, now - RETENTION, alertField)
    if (sync) {
      // The memory store's path: the same steps as below, without a closure per step.
      const facts = plan.facts.length === 0 ? NO_RESULTS : sync.runSync(plan.facts, now)
      const { ops, scoreAt } = scoreOps(plan, decide(plan, facts, points), now)
      const results = ops.length === 0 ? NO_RESULTS : sync.runSync(ops, now)
      return afterScore(event, now, results[scoreAt] as ScoreResult | undefined)
    }
    return step(plan.facts, now, (facts) => {
      const decision = decide(plan, facts, points)
      const { ops, scoreAt } = scoreOps(plan, decision, now)
      return step(ops, now, (results) => afterScore(event, now, results[scoreAt] as ScoreResult | undefined))
    }) as void | Promise<void>
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
      const [entries] = await store.run(readLedger(userKey, now), now)
      return snapshot(userKey, (entries as readonly LedgerEntry[]) ?? [], now, maths)
    },
  }
}
