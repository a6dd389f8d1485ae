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
  ipFailures: (ip: string) => `ip:${ip}`,
  flagged: (ip: string) => `flag:${ip}`,
  devices: (u: string) => `dev:${u}`,
  once: (d: Detection, u: string) => `once:${d}:${u}`,
  alert: (u: string, level: number) => `alert:${u}:${level}`,
}

/**
 * The first half of scoring one event: the ops that read (and record) what the
 * detectors need, and a function that turns their answers into candidate
 * ledger entries. Keeping the rules here, as plain data in and out, is what lets
 * the memory and Redis stores stay generic.
 */
export interface Plan {
  readonly facts: StoreOp[]
  decide(results: readonly StoreResult[]): Decision
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
  readonly flagIp?: string
}

const EMPTY: Decision = { entries: [], merged: [], inheritAlert: false, forget: [] }

export const planEvent = (
  event: AuthEvent,
  now: number,
  points: PointsTable,
  retentionSince: number,
  alertLevel: number,
): Plan => {
  const u = event.userKey
  const ip = ipKey(event.ip)
  const shownIp = displayIp(event.ip)
  const ops: StoreOp[] = []
  const dayAgo = now - RULES.DAY

  const entry = (
    detection: Detection,
    evidence: Record<string, string | number> = {},
    once?: number,
  ): ScoredEntry | undefined => {
    const value = points[detection]
    if (!(value > 0) || u === null) return undefined
    const withIp = shownIp === undefined ? evidence : { ...evidence, ip: shownIp }
    const e: LedgerEntry = { detection, points: value, at: now, evidence: { event: event.id, ...withIp } }
    return once === undefined ? { entry: e } : { entry: e, once: { key: keys.once(detection, u), ttl: once } }
  }
  const domainEntry = (): ScoredEntry | undefined => {
    const email = event.identity.email
    if (typeof email !== 'string' || u === null) return undefined
    const kind = emailDomainKind(email)
    if (kind === 'disposable')
      return entry('disposable_email', { domain: email.slice(email.lastIndexOf('@') + 1) }, RULES.LONG_MEMORY)
    if (kind === 'relay')
      return entry('relay_email', { domain: email.slice(email.lastIndexOf('@') + 1) }, RULES.LONG_MEMORY)
    return undefined
  }
  const compact = (list: (ScoredEntry | undefined)[]): ScoredEntry[] =>
    list.filter((e): e is ScoredEntry => e !== undefined)

  switch (event.type) {
    case 'login.failed': {
      // An empty form or a browser's first Basic challenge is not a wrong password.
      if (event.reason !== 'invalid_credentials') return { facts: [], decide: () => EMPTY }
      const member = ip ?? ''
      const iF =
        u === null
          ? -1
          : ops.push({ op: 'hit', key: keys.failures(u), add: true, since: dayAgo, ttl: RULES.DAY, member }) - 1
      const iB =
        u === null
          ? -1
          : ops.push({
              op: 'hit',
              key: keys.failures(u),
              add: false,
              since: now - RULES.BURST_WINDOW,
              ttl: RULES.DAY,
            }) - 1
      const iC =
        u === null
          ? -1
          : ops.push({ op: 'hit', key: keys.consecutive(u), add: true, since: dayAgo, ttl: RULES.DAY, member }) - 1
      const target = event.loginKey ?? u ?? ''
      const iIp =
        ip === undefined
          ? -1
          : ops.push({
              op: 'hit',
              key: keys.ipFailures(ip),
              add: true,
              since: now - RULES.STUFFING_LOGIN_WINDOW,
              ttl: RULES.DAY,
              member: target,
            }) - 1
      const iIpDay =
        ip === undefined
          ? -1
          : ops.push({ op: 'hit', key: keys.ipFailures(ip), add: false, since: dayAgo, ttl: RULES.DAY }) - 1
      const iFlag = ip === undefined ? -1 : ops.push({ op: 'marked', key: keys.flagged(ip) }) - 1
      return {
        facts: ops,
        decide(r) {
          const day = r[iF] as HitResult | undefined
          const burst = r[iB] as HitResult | undefined
          const run = r[iC] as HitResult | undefined
          const ipRecent = r[iIp] as HitResult | undefined
          const ipDay = r[iIpDay] as HitResult | undefined
          const stuffingSource =
            (ipRecent !== undefined && ipRecent.distinct >= RULES.STUFFING_DISTINCT_LOGINS) ||
            (ipDay !== undefined && ipDay.count >= RULES.STUFFING_IP_FAILURES)
          const flagged = r[iFlag] === true || stuffingSource
          const list: (ScoredEntry | undefined)[] = []
          if (day && day.count <= RULES.WRONG_PASSWORD_DAILY_CAP)
            list.push(entry('wrong_password', { failures24h: day.count }))
          if (burst && burst.count >= RULES.BURST_FAILURES) {
            list.push(entry('failure_burst', { failures15m: burst.count }, RULES.BURST_WINDOW))
          }
          if (run && run.member >= RULES.BRUTE_FORCE_RUN)
            list.push(entry('brute_force', { consecutive: run.member }, RULES.DAY))
          if (day && day.count >= RULES.DISTRIBUTED_FAILURES && day.distinct >= RULES.DISTRIBUTED_IPS) {
            list.push(entry('distributed_guessing', { failures24h: day.count, ips: day.distinct }, RULES.DAY))
          }
          if (flagged) list.push(entry('stuffing_target', {}, RULES.DAY))
          list.push(domainEntry())
          const decision: Decision = { entries: compact(list), merged: [], inheritAlert: false, forget: [] }
          // The flag is recorded even when no user is known (a stuffing run on unknown logins).
          return stuffingSource && ip !== undefined && r[iFlag] !== true ? { ...decision, flagIp: ip } : decision
        },
      }
    }
    case 'login.succeeded': {
      if (u === null) return { facts: [], decide: () => EMPTY }
      const iFlag = ip === undefined ? -1 : ops.push({ op: 'marked', key: keys.flagged(ip) }) - 1
      const iBf = ops.push({ op: 'marked', key: keys.once('brute_force', u) }) - 1
      const iDev =
        ops.push({
          op: 'remember',
          key: keys.devices(u),
          value: userAgentFamily(event.userAgent),
          max: RULES.DEVICE_MEMORY,
          ttl: RULES.LONG_MEMORY,
        }) - 1
      // A success under a login that failed before it was known to be this user:
      // bring that login's pseudonymous ledger over, so the brute force counts against the account.
      const alias = event.loginKey !== undefined && event.loginKey !== u ? event.loginKey : undefined
      const iAliasLedger =
        alias === undefined ? -1 : ops.push({ op: 'read', key: keys.ledger(alias), since: retentionSince }) - 1
      const iAliasBf = alias === undefined ? -1 : ops.push({ op: 'marked', key: keys.once('brute_force', alias) }) - 1
      const iAliasAlert = alias === undefined ? -1 : ops.push({ op: 'marked', key: keys.alert(alias, alertLevel) }) - 1
      ops.push({ op: 'reset', key: keys.consecutive(u) })
      return {
        facts: ops,
        decide(r) {
          const device = r[iDev] as RememberResult
          const list: (ScoredEntry | undefined)[] = []
          if (r[iFlag] === true) list.push(entry('success_from_flagged_ip', {}, RULES.DAY))
          if (r[iBf] === true || r[iAliasBf] === true) list.push(entry('success_after_brute_force', {}, RULES.DAY))
          // The first success sets the baseline; only later unseen families are new devices.
          if (!device.seen && device.size > 0)
            list.push(entry('new_device', { device: userAgentFamily(event.userAgent) }))
          list.push(domainEntry())
          const merged = (r[iAliasLedger] as readonly LedgerEntry[] | undefined) ?? []
          return {
            entries: compact(list),
            merged,
            inheritAlert: r[iAliasAlert] === true,
            forget: alias === undefined ? [] : [keys.ledger(alias), keys.consecutive(alias)],
          }
        },
      }
    }
    case 'custom': {
      const severity = event.severity ?? 'low'
      const e = entry(attackDetection(severity), { name: event.name ?? 'custom', severity })
      return { facts: [], decide: () => ({ ...EMPTY, entries: compact([e, domainEntry()]) }) }
    }
    case 'signup':
      return { facts: [], decide: () => ({ ...EMPTY, entries: compact([domainEntry()]) }) }
    default:
      // login.error is an infrastructure problem, not something the user did.
      return { facts: [], decide: () => EMPTY }
  }
}
