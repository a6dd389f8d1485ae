import { randomUUID } from 'node:crypto'
import type { Diagnostics } from '../diagnostics.js'
import type { AuthEvent } from '../event.js'
import type { LedgerEntry, ScoredEntry, ScoreResult, Store, StoreOp, Threshold } from '../store/store.js'
import type { RiskAlert } from './alert.js'
import { keys, planEvent } from './detectors.js'
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

export interface RiskEngine {
  /** Scores one event; never rejects (store errors are counted and logged). */
  process(event: AuthEvent): Promise<void>
  risk(userKey: string): Promise<RiskSnapshot>
}

/** Entries are kept this long and at most this many per user. */
const RETENTION = 30 * RULES.DAY
const MAX_ENTRIES = 256

export const createRiskEngine = (config: RiskEngineConfig, diag: Diagnostics): RiskEngine => {
  const { store, points, trigger } = config
  const windowMs = trigger?.withinMs ?? RULES.DAY
  const maths: LedgerMaths = { halfLifeMs: config.halfLifeMs, maxScore: config.maxScore, windowMs }
  const levels = trigger ? [trigger.points, ...trigger.escalate] : []

  const thresholds = (u: string): Threshold[] =>
    levels.map((level) => ({ level, key: keys.alert(u, level), ttl: windowMs }))

  const alertFor = async (event: AuthEvent, u: string, level: number, now: number): Promise<void> => {
    const [entries] = (await store.run([{ op: 'read', key: keys.ledger(u), since: now - RETENTION }], now)) as [
      readonly LedgerEntry[],
    ]
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
    config.onAlert(alert)
  }

  const process = async (event: AuthEvent): Promise<void> => {
    const parsed = Date.parse(event.at)
    const now = Number.isFinite(parsed) ? parsed : config.clock()
    const plan = planEvent(event, now, points, now - RETENTION, trigger?.points ?? Number.POSITIVE_INFINITY)
    const facts = plan.facts.length > 0 ? await store.run(plan.facts, now) : []
    const decision = plan.decide(facts)
    const u = event.userKey
    const ops: StoreOp[] = []
    if (decision.flagIp !== undefined) ops.push({ op: 'claim', key: keys.flagged(decision.flagIp), ttl: RULES.DAY })
    const scoring = u !== null && (decision.entries.length > 0 || decision.merged.length > 0)
    if (scoring && u !== null) {
      // A user inherits the alert already sent for the login it was attacked under.
      if (decision.inheritAlert && trigger) ops.push({ op: 'claim', key: keys.alert(u, trigger.points), ttl: windowMs })
      const merged: ScoredEntry[] = decision.merged.map((entry) => ({ entry }))
      ops.push({
        op: 'score',
        key: keys.ledger(u),
        entries: [...merged, ...decision.entries],
        keepSince: now - RETENTION,
        max: MAX_ENTRIES,
        ttl: RETENTION,
        windowSince: now - windowMs,
        thresholds: thresholds(u),
      })
    }
    for (const key of decision.forget) ops.push({ op: 'reset', key })
    if (ops.length === 0) return
    const results = await store.run(ops, now)
    if (!scoring || u === null) return
    const score = results.find((r): r is ScoreResult => r !== null && typeof r === 'object' && 'crossed' in r)
    if (score === undefined) return
    diag.count('detections', score.added.length)
    const crossed = score.crossed
    // Several levels crossed at once (a big jump) make one alert at the highest.
    const level = crossed[crossed.length - 1]
    if (level !== undefined) await alertFor(event, u, level, now)
    if (config.onScore) {
      const [entries] = (await store.run([{ op: 'read', key: keys.ledger(u), since: now - RETENTION }], now)) as [
        readonly LedgerEntry[],
      ]
      config.onScore(u, standingScore(entries, now, maths))
    }
  }

  return {
    async process(event) {
      try {
        await process(event)
      } catch (err) {
        diag.count('store_errors')
        diag.error('risk_failed', 'an event could not be scored (store unavailable?); the login was not affected', err)
      }
    },
    async risk(userKey) {
      const now = config.clock()
      const [entries] = (await store.run([{ op: 'read', key: keys.ledger(userKey), since: now - RETENTION }], now)) as [
        readonly LedgerEntry[],
      ]
      return snapshot(userKey, entries, now, maths)
    },
  }
}
