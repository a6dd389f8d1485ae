import type { AuthEvent } from '../event.js'
import type { HitResult, LedgerEntry, RememberResult, ScoredEntry, StoreResult } from '../store/store.js'
import type { OpSink } from './batch.js'
import { emailDomainKind } from './email-domain.js'
import { type IpFacts, type IpRef, ipFacts } from './ip.js'
import { attackDetection, DETECTIONS, type Detection, type PointsTable, RULES } from './points.js'
import { userAgentFamily } from './user-agent.js'

/**
 * Where the detectors keep their state. A store key is an owner: a user's
 * `userKey`, or `ip:<prefix>` for an IP (`IpFacts.key`; userKeys never start
 * with `ip:`: they are `id:…`, `login:…` or a URI-encoded composite), or in
 * advanced mode `ip:~<hmac>` (`keyedIpRef`). Fields name one datum of the owner.
 * Built from userKeys and IP keys only: no personal data in advanced mode.
 */

const ONCE = Object.fromEntries(DETECTIONS.map((d) => [d, `once:${d}`])) as Readonly<Record<Detection, string>>

export const fields = {
  /** A user's ledger of point entries. */
  ledger: 'ledger',
  /** A user's failures over a day (members: IP prefixes). */
  failures: 'failures',
  /** A user's failures since their last success (members: IP prefixes). */
  consecutive: 'consecutive',
  /** The user-agent families of a user's last successes (`RULES.DEVICE_MEMORY` of them). */
  devices: 'devices',
  /** Logins failing from an IP (members), kept only for the stuffing window. */
  ipLogins: 'logins',
  /** Failures from an IP over a day (a plain count). */
  ipFailures: 'failures',
  /** The IP is a credential-stuffing source. */
  flagged: 'flagged',
  /** A once-per-window detection's mark. */
  once: (d: Detection): string => ONCE[d],
  /** The mark of an alert level (`alert:10`). */
  alert: (level: number): string => `alert:${level}`,
}

/**
 * Scoring one event is two store round trips: the facts batch (`planEvent`)
 * reads and records what the detectors need, then `decide` turns the answers
 * into candidate ledger entries. Keeping the rules here, as plain data in and
 * out, is what lets the memory and Redis stores stay generic. Indices below
 * point into the facts batch's results (-1 when that fact was not asked for).
 */
export interface Plan {
  readonly event: AuthEvent
  readonly now: number
  /** The event's IP as a store key (`ip:<prefix>`, or `ip:~<hmac>` in advanced mode). */
  readonly ip: string | undefined
  readonly ipFacts: IpFacts | undefined
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
  /** The first of the alias's alert marks (one per trigger level, consecutive), or -1. */
  /** Once-marks the user already holds (see `planEvent`). */
  iOnceBurst: number
  iOnceRun: number
  iOnceSpread: number
  iOnceStuffing: number
  iOnceFlagged: number
}

export interface Decision {
  readonly entries: ScoredEntry[]
  /**
   * The login's pseudonymous ledger (earlier failures) had entries when the facts batch
   * read it: the user's score must run, after the engine's `move` of that ledger, so the
   * trigger counts them. Only a hint: the move itself, one atomic op, decides what is merged
   * (two successes of one login at once both see entries here; the first move takes them).
   */
  readonly merging: boolean
  /** Fields of the alias (the login's key) to forget once merged. */
  readonly forget: readonly string[]
  /** Fields of the alias to move to the user (`move`) after the score: its failure window and once-marks. */
  readonly carry: readonly string[]
  /** The store key of an IP that this event showed to be a credential-stuffing source. */
  readonly flagIp: string | undefined
  /**
   * A scoring detection was skipped only because the user holds its once-mark. The score
   * operation still runs then, with nothing to add: it re-claims an alert mark that has
   * expired and refreshes the ledger's expiry, as it would had the entry been offered.
   */
  readonly held: boolean
  /** The login merged into the user holds a brute-force mark: the user is to hold one too. */
  readonly bruteForceMerged: boolean
}

/** Puts the event's facts batch into `sink` and answers where each fact's result will be. */
export const planEvent = (
  event: AuthEvent,
  now: number,
  retentionSince: number,
  sink: OpSink,
  ipRef?: (facts: IpFacts) => IpRef,
): Plan => {
  const u = event.userKey
  const facts = ipFacts(event.ip)
  const ref = facts === undefined || ipRef === undefined ? undefined : ipRef(facts)
  const ip = ref === undefined ? facts?.key : ref.key
  const alias =
    event.type === 'login.succeeded' && event.loginKey !== undefined && event.loginKey !== u
      ? event.loginKey
      : undefined
  const plan: Plan = {
    event,
    now,
    ip,
    ipFacts: facts,
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
    iOnceBurst: -1,
    iOnceRun: -1,
    iOnceSpread: -1,
    iOnceStuffing: -1,
    iOnceFlagged: -1,
  }
  const dayAgo = now - RULES.DAY
  if (event.type === 'login.failed') {
    // An empty form or a browser's first Basic challenge is not a wrong password.
    if (event.reason !== 'invalid_credentials') return plan
    // IP ops first and the user's last: the second batch (scoring) starts with the
    // same user, which the memory store has just looked up.
    if (ip !== undefined) {
      // Distinct logins failing from one IP: the login key when known, else the user.
      const target = event.loginKey ?? u ?? ''
      // Two keys so the per-login members are forgotten after the short window.
      plan.iIpRecent = sink.hit(
        ip,
        fields.ipLogins,
        true,
        now - RULES.STUFFING_LOGIN_WINDOW,
        RULES.STUFFING_LOGIN_WINDOW,
        target,
      )
      plan.iIpDay = sink.hit(ip, fields.ipFailures, true, dayAgo, RULES.DAY)
      plan.iFlag = sink.marked(ip, fields.flagged)
    }
    const member = ref === undefined ? (facts?.prefix ?? '') : ref.member
    if (u !== null) {
      plan.iDay = sink.hit(u, fields.failures, true, dayAgo, RULES.DAY, member)
      plan.iBurst = sink.hit(u, fields.failures, false, now - RULES.BURST_WINDOW, RULES.DAY)
      plan.iRun = sink.hit(u, fields.consecutive, true, dayAgo, RULES.DAY, member)
      // A once-per-window detection the user already holds needs no candidate entry (the
      // score op would drop it). On an account under attack that is most of them, and
      // each candidate is several objects with its evidence.
      plan.iOnceBurst = sink.marked(u, fields.once('failure_burst'))
      plan.iOnceRun = sink.marked(u, fields.once('brute_force'))
      plan.iOnceSpread = sink.marked(u, fields.once('distributed_guessing'))
      plan.iOnceStuffing = sink.marked(u, fields.once('stuffing_target'))
    }
  } else if (event.type === 'login.succeeded' && u !== null) {
    if (ip !== undefined) plan.iFlag = sink.marked(ip, fields.flagged)
    plan.iOnceFlagged = sink.marked(u, fields.once('success_from_flagged_ip'))
    plan.iBruteForce = sink.marked(u, fields.once('brute_force'))
    plan.iDevice = sink.remember(
      u,
      fields.devices,
      userAgentFamily(event.userAgent),
      RULES.DEVICE_MEMORY,
      RULES.LONG_MEMORY,
    )
    // A success under a login that failed before it was known to be this user: that
    // login's pseudonymous ledger comes over (the engine's `move`, in the next batch), so
    // the brute force counts against the account. Read here only to know whether there is
    // anything to carry (see `Decision.merging`); its alert marks move unconditionally (the engine).
    if (alias !== undefined) {
      plan.iAliasLedger = sink.read(alias, fields.ledger, retentionSince)
      plan.iAliasBruteForce = sink.marked(alias, fields.once('brute_force'))
    }
    sink.reset(u, fields.consecutive)
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
  const shownIp = detection === 'wrong_password' ? undefined : plan.ipFacts?.display
  // Callers pass a fresh literal (or nothing): adding the IP to it spares a copy.
  let facts = evidence
  if (shownIp !== undefined) {
    if (facts === undefined) facts = { ip: shownIp }
    else facts.ip = shownIp
  }
  const entry: LedgerEntry =
    facts === undefined
      ? { detection, points: value, at: plan.now }
      : { detection, points: value, at: plan.now, evidence: facts }
  return once === undefined ? { entry } : { entry, once: onceSpec(detection, once) }
}

/** The once-mark of a detection and window, shared: a detection always comes with the same window. */
const onceSpecs = new Map<Detection, { readonly field: string; readonly ttl: number }>()
const onceSpec = (detection: Detection, ttl: number): { readonly field: string; readonly ttl: number } => {
  const known = onceSpecs.get(detection)
  if (known !== undefined && known.ttl === ttl) return known
  const spec = { field: fields.once(detection), ttl }
  onceSpecs.set(detection, spec)
  return spec
}

/**
 * `success_after_brute_force`, once a day per user *and network* (the event's IP prefix, as
 * its store key): once a day per user, the owner's own login after a brute force (from home)
 * used the day's mark, and the attacker's success an hour later from elsewhere scored nothing
 * and alerted no one. Without an IP, once a day per user.
 */
const takeoverEntry = (plan: Plan, points: PointsTable): ScoredEntry | undefined => {
  const scoredEntry = scored(plan, points, 'success_after_brute_force', undefined, RULES.DAY)
  if (scoredEntry === undefined || plan.ip === undefined) return scoredEntry
  return { entry: scoredEntry.entry, once: { field: `${TAKEOVER_MARK}@${plan.ip}`, ttl: RULES.DAY } }
}

const TAKEOVER_MARK = fields.once('success_after_brute_force')

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

/** Whether `detection` would score for this event, were its once-mark not held. */
const scores = (plan: Plan, points: PointsTable, detection: Detection): boolean =>
  points[detection] > 0 && plan.event.userKey !== null

const NOTHING: readonly string[] = []
/**
 * A login's ledger is moved into the user's (by the engine, before the score) and its run
 * of consecutive failures ends with the success, like the user's own. Its failure window and once-marks join the
 * user's: the failures typed before the login was known to be this user's still count
 * towards the daily cap, the burst and the spread, and a detection that already fired
 * for the login does not fire again for the user within its window (five typos, a
 * success and two more typos are seven failures of one day, not two).
 */
const FORGET_ALIAS: readonly string[] = [fields.consecutive]
// Not `brute_force`'s mark: it stays with the login for its day, so that every account that
// logs in with that login within it is a takeover. Moved to the first, an attacker who owns a
// look-alike account (`ａlice@example.com`, see IdentityBoundary) logged in with it right
// after guessing, took the mark away, and the victim's takeover raised nothing.
const CARRY_ALIAS: readonly string[] = [
  fields.failures,
  ...(['failure_burst', 'distributed_guessing', 'stuffing_target', 'disposable_email', 'relay_email'] as const).map(
    fields.once,
  ),
]

export const decide = (plan: Plan, r: readonly StoreResult[], points: PointsTable): Decision => {
  const { event } = plan
  const entries: ScoredEntry[] = []
  let flagIp: string | undefined
  let merging = false
  let forget = NOTHING
  let carry = NOTHING
  let held = false

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
      if (r[plan.iOnceBurst] !== true) {
        add(entries, scored(plan, points, 'failure_burst', { failures15m: burst.count }, RULES.BURST_WINDOW))
      } else held ||= scores(plan, points, 'failure_burst')
    }
    if (run && run.member >= RULES.BRUTE_FORCE_RUN) {
      if (r[plan.iOnceRun] !== true) {
        add(entries, scored(plan, points, 'brute_force', { consecutive: run.member }, RULES.DAY))
      } else held ||= scores(plan, points, 'brute_force')
    }
    if (day && day.count >= RULES.DISTRIBUTED_FAILURES && day.distinct >= RULES.DISTRIBUTED_IPS) {
      if (r[plan.iOnceSpread] !== true) {
        add(
          entries,
          scored(plan, points, 'distributed_guessing', { failures24h: day.count, ips: day.distinct }, RULES.DAY),
        )
      } else held ||= scores(plan, points, 'distributed_guessing')
    }
    if (wasFlagged || stuffingSource) {
      if (r[plan.iOnceStuffing] !== true) add(entries, scored(plan, points, 'stuffing_target', undefined, RULES.DAY))
      else held ||= scores(plan, points, 'stuffing_target')
    }
    add(entries, domainEntry(plan, points))
    // The flag is recorded even when no user is known (a stuffing run on unknown logins).
    if (stuffingSource && !wasFlagged) flagIp = plan.ip
  } else if (event.type === 'login.succeeded' && event.userKey !== null) {
    const device = r[plan.iDevice] as RememberResult
    if (r[plan.iFlag] === true) {
      if (r[plan.iOnceFlagged] !== true)
        add(entries, scored(plan, points, 'success_from_flagged_ip', undefined, RULES.DAY))
      else held ||= scores(plan, points, 'success_from_flagged_ip')
    }
    if (r[plan.iBruteForce] === true || r[plan.iAliasBruteForce] === true) {
      add(entries, takeoverEntry(plan, points))
    }
    // The first success sets the baseline; only later unseen families are new devices.
    if (!device.seen && device.size > 0) {
      add(entries, scored(plan, points, 'new_device', { device: userAgentFamily(event.userAgent) }, undefined))
    }
    add(entries, domainEntry(plan, points))
    if (plan.alias !== undefined) {
      merging = ((r[plan.iAliasLedger] as readonly LedgerEntry[] | undefined)?.length ?? 0) > 0
      forget = FORGET_ALIAS
      // Most successes come from logins that never failed: nothing to move (seven operations
      // saved on nearly every success). A login that failed has ledger entries, since its first
      // failure scores, unless wrong_password is switched off, when only its window stays behind.
      if (merging || r[plan.iAliasBruteForce] === true) carry = CARRY_ALIAS
    }
  } else if (event.type === 'custom') {
    const severity = event.severity ?? 'low'
    add(entries, scored(plan, points, attackDetection(severity), { name: event.name ?? 'custom', severity }, undefined))
    add(entries, domainEntry(plan, points))
  } else if (event.type === 'signup') {
    add(entries, domainEntry(plan, points))
  }
  // login.error is an infrastructure problem, not something the user did: nothing to score.
  return { entries, merging, forget, carry, flagIp, held, bruteForceMerged: r[plan.iAliasBruteForce] === true }
}
