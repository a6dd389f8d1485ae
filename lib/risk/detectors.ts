import type { AuthEvent } from '../event.js'
import type { HitResult, LedgerEntry, RememberResult, ScoredEntry, StoreOp, StoreResult } from '../store/store.js'
import { emailDomainKind } from './email-domain.js'
import { displayIp, ipKey } from './ip.js'
import { attackDetection, type Detection, type PointsTable, RULES } from './points.js'
import { userAgentFamily } from './user-agent.js'

/** Store keys. Built from userKeys and IP prefixes only: no personal data in advanced mode. */
export const keys = {
  ledger: (u: string) => `l:${u}`,
  failures: (u: string) => `f:${u}`,
  consecutive: (u: string) => `c:${u}`,
  /** Logins failing from an IP (members), kept only for the stuffing window. */
  ipLogins: (ip: string) => `ipl:${ip}`,
  /** Failures from an IP over a day (a plain count). */
  ipFailures: (ip: string) => `ipd:${ip}`,
  flagged: (ip: string) => `flag:${ip}`,
  devices: (u: string) => `dev:${u}`,
  once: (d: Detection, u: string) => `once:${d}:${u}`,
  alert: (u: string, level: number) => `alert:${u}:${level}`,
}

/**
 * Scoring one event is two store round trips: `facts` reads (and records) what
 * the detectors need, then `decide` turns the answers into candidate ledger
 * entries. Keeping the rules here, as plain data in and out, is what lets the
 * memory and Redis stores stay generic. Indices below point into `facts`
 * (-1 when that fact was not asked for).
 */
export interface Plan {
  readonly event: AuthEvent
  readonly now: number
  readonly ip: string | undefined
  readonly facts: StoreOp[]
  readonly alias: string | undefined
  iDay: number
  iBurst: number
  iRun: number
  iIpRecent: number
  iIpDay: number
  iFlag: number
  iBruteForce: number
  iDevice: number
  iAliasLedger: number
  iAliasBruteForce: number
  iAliasAlert: number
}

export interface Decision {
  readonly entries: ScoredEntry[]
  /** Ledger entries merged from the login's pseudonymous ledger (earlier failures). */
  readonly merged: readonly LedgerEntry[]
  /** The login's ledger already alerted: the user inherits that alert instead of raising a second one. */
  readonly inheritAlert: boolean
  /** Keys to forget once merged. */
  readonly forget: readonly string[]
  /** An IP prefix that this event showed to be a credential-stuffing source. */
  readonly flagIp: string | undefined
}

const push = (plan: Plan, op: StoreOp): number => plan.facts.push(op) - 1

export const planEvent = (event: AuthEvent, now: number, retentionSince: number, alertLevel: number): Plan => {
  const u = event.userKey
  const ip = ipKey(event.ip)
  const alias =
    event.type === 'login.succeeded' && event.loginKey !== undefined && event.loginKey !== u
      ? event.loginKey
      : undefined
  const plan: Plan = {
    event,
    now,
    ip,
    facts: [],
    alias,
    iDay: -1,
    iBurst: -1,
    iRun: -1,
    iIpRecent: -1,
    iIpDay: -1,
    iFlag: -1,
    iBruteForce: -1,
    iDevice: -1,
    iAliasLedger: -1,
    iAliasBruteForce: -1,
    iAliasAlert: -1,
  }
  const dayAgo = now - RULES.DAY
  if (event.type === 'login.failed') {
    // An empty form or a browser's first Basic challenge is not a wrong password.
    if (event.reason !== 'invalid_credentials') return plan
    const member = ip ?? ''
    if (u !== null) {
      plan.iDay = push(plan, { op: 'hit', key: keys.failures(u), add: true, since: dayAgo, ttl: RULES.DAY, member })
      plan.iBurst = push(plan, {
        op: 'hit',
        key: keys.failures(u),
        add: false,
        since: now - RULES.BURST_WINDOW,
        ttl: RULES.DAY,
      })
      plan.iRun = push(plan, { op: 'hit', key: keys.consecutive(u), add: true, since: dayAgo, ttl: RULES.DAY, member })
    }
    if (ip !== undefined) {
      // Distinct logins failing from one IP: the login key when known, else the user.
      const target = event.loginKey ?? u ?? ''
      // Two keys so the per-login members are forgotten after the short window.
      plan.iIpRecent = push(plan, {
        op: 'hit',
        key: keys.ipLogins(ip),
        add: true,
        since: now - RULES.STUFFING_LOGIN_WINDOW,
        ttl: RULES.STUFFING_LOGIN_WINDOW,
        member: target,
      })
      plan.iIpDay = push(plan, { op: 'hit', key: keys.ipFailures(ip), add: true, since: dayAgo, ttl: RULES.DAY })
      plan.iFlag = push(plan, { op: 'marked', key: keys.flagged(ip) })
    }
  } else if (event.type === 'login.succeeded' && u !== null) {
    if (ip !== undefined) plan.iFlag = push(plan, { op: 'marked', key: keys.flagged(ip) })
    plan.iBruteForce = push(plan, { op: 'marked', key: keys.once('brute_force', u) })
    plan.iDevice = push(plan, {
      op: 'remember',
      key: keys.devices(u),
      value: userAgentFamily(event.userAgent),
      max: RULES.DEVICE_MEMORY,
      ttl: RULES.LONG_MEMORY,
    })
    // A success under a login that failed before it was known to be this user:
    // bring that login's pseudonymous ledger over, so the brute force counts against the account.
    if (alias !== undefined) {
      plan.iAliasLedger = push(plan, { op: 'read', key: keys.ledger(alias), since: retentionSince })
      plan.iAliasBruteForce = push(plan, { op: 'marked', key: keys.once('brute_force', alias) })
      plan.iAliasAlert = push(plan, { op: 'marked', key: keys.alert(alias, alertLevel) })
    }
    push(plan, { op: 'reset', key: keys.consecutive(u) })
  }
  return plan
}

const scored = (
  plan: Plan,
  points: PointsTable,
  detection: Detection,
  evidence: Record<string, string | number> | undefined,
  once: number | undefined,
): ScoredEntry | undefined => {
  const value = points[detection]
  const u = plan.event.userKey
  if (!(value > 0) || u === null) return undefined
  // wrong_password, the most frequent entry by far, carries no evidence: its IP is on the
  // burst / brute-force entries and in the alert, and dropping it keeps an idle user's
  // ledger within the memory budget (about 1 KB per tracked user).
  const shownIp = detection === 'wrong_password' ? undefined : displayIp(plan.event.ip)
  const facts = shownIp === undefined ? evidence : { ...evidence, ip: shownIp }
  const entry: LedgerEntry =
    facts === undefined
      ? { detection, points: value, at: plan.now }
      : { detection, points: value, at: plan.now, evidence: facts }
  return once === undefined ? { entry } : { entry, once: { key: keys.once(detection, u), ttl: once } }
}

const domainEntry = (plan: Plan, points: PointsTable): ScoredEntry | undefined => {
  const email = plan.event.identity.email
  if (typeof email !== 'string') return undefined
  const kind = emailDomainKind(email)
  if (kind === 'regular') return undefined
  const evidence = { domain: email.slice(email.lastIndexOf('@') + 1) }
  return scored(plan, points, kind === 'disposable' ? 'disposable_email' : 'relay_email', evidence, RULES.LONG_MEMORY)
}

const add = (list: ScoredEntry[], entry: ScoredEntry | undefined): void => {
  if (entry !== undefined) list.push(entry)
}

const NOTHING: readonly LedgerEntry[] = []

export const decide = (plan: Plan, r: readonly StoreResult[], points: PointsTable): Decision => {
  const { event } = plan
  const entries: ScoredEntry[] = []
  let flagIp: string | undefined
  let merged = NOTHING
  let inheritAlert = false
  let forget: readonly string[] = NOTHING as unknown as readonly string[]

  if (event.type === 'login.failed' && event.reason === 'invalid_credentials') {
    const day = r[plan.iDay] as HitResult | undefined
    const burst = r[plan.iBurst] as HitResult | undefined
    const run = r[plan.iRun] as HitResult | undefined
    const ipRecent = r[plan.iIpRecent] as HitResult | undefined
    const ipDay = r[plan.iIpDay] as HitResult | undefined
    const stuffingSource =
      (ipRecent !== undefined && ipRecent.distinct >= RULES.STUFFING_DISTINCT_LOGINS) ||
      (ipDay !== undefined && ipDay.count >= RULES.STUFFING_IP_FAILURES)
    const wasFlagged = r[plan.iFlag] === true
    if (day && day.count <= RULES.WRONG_PASSWORD_DAILY_CAP)
      add(entries, scored(plan, points, 'wrong_password', undefined, undefined))
    if (burst && burst.count >= RULES.BURST_FAILURES) {
      add(entries, scored(plan, points, 'failure_burst', { failures15m: burst.count }, RULES.BURST_WINDOW))
    }
    if (run && run.member >= RULES.BRUTE_FORCE_RUN) {
      add(entries, scored(plan, points, 'brute_force', { consecutive: run.member }, RULES.DAY))
    }
    if (day && day.count >= RULES.DISTRIBUTED_FAILURES && day.distinct >= RULES.DISTRIBUTED_IPS) {
      add(
        entries,
        scored(plan, points, 'distributed_guessing', { failures24h: day.count, ips: day.distinct }, RULES.DAY),
      )
    }
    if (wasFlagged || stuffingSource) add(entries, scored(plan, points, 'stuffing_target', undefined, RULES.DAY))
    add(entries, domainEntry(plan, points))
    // The flag is recorded even when no user is known (a stuffing run on unknown logins).
    if (stuffingSource && !wasFlagged) flagIp = plan.ip
  } else if (event.type === 'login.succeeded' && event.userKey !== null) {
    const device = r[plan.iDevice] as RememberResult
    if (r[plan.iFlag] === true) add(entries, scored(plan, points, 'success_from_flagged_ip', undefined, RULES.DAY))
    if (r[plan.iBruteForce] === true || r[plan.iAliasBruteForce] === true) {
      add(entries, scored(plan, points, 'success_after_brute_force', undefined, RULES.DAY))
    }
    // The first success sets the baseline; only later unseen families are new devices.
    if (!device.seen && device.size > 0) {
      add(entries, scored(plan, points, 'new_device', { device: userAgentFamily(event.userAgent) }, undefined))
    }
    add(entries, domainEntry(plan, points))
    if (plan.alias !== undefined) {
      merged = (r[plan.iAliasLedger] as readonly LedgerEntry[] | undefined) ?? NOTHING
      inheritAlert = r[plan.iAliasAlert] === true
      forget = [keys.ledger(plan.alias), keys.consecutive(plan.alias)]
    }
  } else if (event.type === 'custom') {
    const severity = event.severity ?? 'low'
    add(entries, scored(plan, points, attackDetection(severity), { name: event.name ?? 'custom', severity }, undefined))
    add(entries, domainEntry(plan, points))
  } else if (event.type === 'signup') {
    add(entries, domainEntry(plan, points))
  }
  // login.error is an infrastructure problem, not something the user did: nothing to score.
  return { entries, merged, inheritAlert, forget, flagIp }
}
