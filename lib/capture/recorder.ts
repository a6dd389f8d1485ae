import type { Request } from 'express'
import type { Diagnostics } from '../diagnostics.js'
import type { FailureReason, StrategyAttempt } from '../event.js'
import type { Config } from '../options.js'
import { classifyFailure, declinedAtProvider, isOAuth2Client, readLogin } from './login.js'
import type { RawAttempt, Submit } from './raw.js'
import { clientIp, requestUser, userAgent } from './request-facts.js'

type Outcome = StrategyAttempt['outcome']

/** Receives the action a strategy took for one request; the first action wins. */
export interface Tracker {
  /** Records a success; `true` when opt-in enforcement refuses this user's login. */
  succeeded(user: unknown): boolean
  /** Records a failure; `true` when the login typed is blocked, and the request must be refused instead (see `succeeded`). */
  failed(challenge: unknown, status: unknown): boolean
  errored(err: unknown): void
  redirected(): void
  passed(): void
  /** Whether the strategy has taken an action yet. */
  acted(): boolean
}

/** A manual `authTrack` for the request; it replaces the automatic login event. */
export interface ManualLogin {
  readonly success: boolean
  readonly identity: Readonly<Record<string, unknown>>
}

export interface Recorder {
  /** Starts observing one strategy's attempt; `undefined` when the attempt is not a login. */
  begin(req: Request, strategyName: string, options: unknown, strategy: object): Tracker | undefined
  /** Records a manual login outcome (SDK), which wins over automatic capture. */
  manual(req: Request, login: ManualLogin): void
  /** Records a sign-up or custom event for the request. */
  extra(req: Request, raw: Omit<RawAttempt, 'at' | 'req' | 'ip' | 'userAgent' | 'source'>): void
}

/*
 * No object or array *literal* below ever holds the request, directly or through what it
 * holds: the contexts, attempts and raw attempts are class instances, and lists are
 * linked through them. V8 may pretenure a literal's allocation site (allocate its objects
 * straight in the old generation) once most of them outlive one young collection, and a
 * pretenured object that points at a request keeps that request, and everything it reaches,
 * alive through every young collection until the next full one. Measured (issue 2): with the
 * attempts held in an `attempts: []` literal, 19.2 KB of each login request survived a young
 * collection without sqreen-auth and 23 KB with it; as linked lists, 19.3 KB (see
 * bench/README, "What a login costs the collector").
 */

/**
 * Everything observed during one request. It is flushed once the application
 * has ended its response (see `check`), so events never delay the response and
 * a chain of strategies yields one logical outcome.
 */
class RequestContext {
  /** The request's attempts, in order: a list linked through `AttemptRecord.next`. */
  first: AttemptRecord | undefined = undefined
  last: AttemptRecord | undefined = undefined
  manual: ManualLogin | undefined = undefined
  /** When `manual` was recorded (epoch ms), 0 before. */
  manualAt = 0
  /** Sign-up and custom events, in order (linked through `ExtraAttempt.next`); most requests have none. */
  firstExtra: ExtraAttempt | undefined = undefined
  lastExtra: ExtraAttempt | undefined = undefined
  flushed = false
  /** Its flush emitted a login event (automatic or manual): a later authTrack would be a second one. */
  loggedIn = false
  /** An earlier context of the same request already emitted its login event. */
  toldBefore = false
  scheduled = false
  /** The next context due for a check on the same turn of the event loop (see `schedule`). */
  nextDue: RequestContext | undefined = undefined

  constructor(
    readonly req: Request,
    /**
     * The client IP, read when the request is first observed: events are assembled
     * after the response, when the connection may be closed and its address gone.
     */
    readonly ip: string | null,
  ) {}

  add(record: AttemptRecord): void {
    if (this.last === undefined) this.first = record
    else this.last.next = record
    this.last = record
  }

  addExtra(extra: ExtraAttempt): void {
    if (this.lastExtra === undefined) this.firstExtra = extra
    else this.lastExtra.next = extra
    this.lastExtra = extra
  }
}

/** How long events wait for the application to end its response, at most. */
const MAX_WAIT = 60_000
const MIN_DELAY = 5
const MAX_DELAY = 1_000

/**
 * Answers whether an attempt must be refused (opt-in enforcement), given the user a strategy
 * authenticated (none for a failure) and the login that was typed, if one was read (its
 * failures may not be the user's yet): `false`, or `'blocked'` (the attempt is about a
 * blocked account: refused, and recorded as `reason: 'blocked'`, which scores nothing), or
 * `'other'` (refused so that a blocked account's login answers the same whatever the
 * password, but about another account sharing the login: recorded, and scored, as it is).
 */
export type RefusePredicate = (user: unknown, login: string | undefined) => false | 'blocked' | 'other'

/** What every attempt of one recorder shares. */
interface AttemptEnv {
  readonly refuseUser: RefusePredicate | undefined
  readonly diag: Diagnostics
  /** Called after a strategy acted: the request's events are due once its response ends. */
  readonly settled: (ctx: RequestContext) => void
  /** The time of an action, epoch ms (the `clock` option). */
  readonly clock: () => number
}

/**
 * One strategy's attempt within a request, filled in by the action wrappers.
 * A class (methods on the prototype) rather than closures: it is created on
 * every login, and the capture budget is a few microseconds.
 */
class AttemptRecord implements Tracker {
  outcome: Outcome = 'pending'
  reason: FailureReason | undefined = undefined
  user: unknown = undefined
  error: { name: string; code?: string } | undefined = undefined
  /** The request's next attempt (a chain of strategies). */
  next: AttemptRecord | undefined = undefined
  /**
   * When the strategy acted (epoch ms): the event's time. Its event is emitted only once
   * the response has ended, which can be much later (a session saved, a page rendered).
   */
  at = 0

  constructor(
    readonly env: AttemptEnv,
    /** The request's context, held directly: no WeakMap lookup when the strategy acts. */
    readonly ctx: RequestContext,
    readonly req: Request,
    readonly strategy: string,
    readonly login: string | undefined,
    /** The strategy is an OAuth 2.0 client (passport-oauth2 and the strategies built on it). */
    readonly oauth2: boolean,
  ) {}

  succeeded(user: unknown): boolean {
    if (this.outcome !== 'pending') return false
    this.outcome = 'succeeded'
    this.at = this.env.clock()
    this.user = user
    this.env.settled(this.ctx)
    const { refuseUser, diag } = this.env
    if (refuseUser === undefined) return false
    let refused: false | 'blocked' | 'other' = false
    try {
      refused = refuseUser(user, this.login)
    } catch (err) {
      diag.error('block_check_failed', 'could not check whether a user is blocked; the login was allowed', err)
    }
    if (refused === false) return false
    this.outcome = 'failed'
    this.reason = 'blocked'
    return true
  }

  failed(challenge: unknown, status: unknown): boolean {
    if (this.outcome !== 'pending') return false
    this.outcome = 'failed'
    this.at = this.env.clock()
    this.reason =
      this.oauth2 && declinedAtProvider(this.req) ? 'missing_credentials' : classifyFailure(this.req, challenge, status)
    this.env.settled(this.ctx)
    // A blocked login gets the same answer whatever the password: refused only when it is
    // right, the block would tell a guesser which one is (and let them in once it ends).
    const { refuseUser, diag } = this.env
    if (refuseUser === undefined || this.login === undefined) return false
    let refused: false | 'blocked' | 'other' = false
    try {
      refused = refuseUser(undefined, this.login)
    } catch (err) {
      diag.error('block_check_failed', 'could not check whether a user is blocked; the login was allowed', err)
    }
    if (refused === 'blocked') this.reason = 'blocked'
    return refused !== false
  }

  errored(err: unknown): void {
    if (this.outcome !== 'pending') return
    this.outcome = 'error'
    this.at = this.env.clock()
    this.error = errorFacts(err)
    this.env.settled(this.ctx)
  }

  redirected(): void {
    if (this.outcome === 'pending') this.outcome = 'redirect'
  }

  passed(): void {
    if (this.outcome === 'pending') this.outcome = 'pass'
  }

  acted(): boolean {
    return this.outcome !== 'pending'
  }
}

/**
 * What an error code looks like (`ECONNREFUSED`, `ERR_DB_TIMEOUT`, `23505`): anything else
 * is left out, since a code is a free string an error may fill with anything, and the
 * message is never kept for the same reason.
 */
const ERROR_CODE = /^[A-Za-z0-9_.:-]{1,64}$/

const errorFacts = (err: unknown): { name: string; code?: string } => {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const name = ERROR_CODE.test(err.name) ? err.name : 'Error'
    return typeof code === 'string' && ERROR_CODE.test(code) ? { name, code } : { name }
  }
  return { name: typeof err }
}

/**
 * A raw attempt: a class, not a literal, because it holds the request (see the note at the
 * top). Every field is always set: one object shape, cheap to build and read.
 */
class Attempt implements RawAttempt {
  constructor(
    readonly kind: RawAttempt['kind'],
    readonly source: RawAttempt['source'],
    readonly at: number,
    readonly req: Request,
    readonly ip: string | null,
    readonly userAgent: string | null,
    readonly status: number | undefined,
    readonly outcome: RawAttempt['outcome'],
    readonly strategy: string | null | undefined,
    readonly reason: FailureReason | undefined,
    readonly user: unknown,
    readonly identity: Readonly<Record<string, unknown>> | undefined,
    readonly login: string | undefined,
    readonly attempts: readonly StrategyAttempt[] | undefined,
    readonly error: { readonly name: string; readonly code?: string } | undefined,
    readonly name: string | undefined,
    readonly severity: RawAttempt['severity'],
    readonly properties: Readonly<Record<string, unknown>> | undefined,
  ) {}
}

/** A sign-up or custom event waiting for its request's response to end. */
class ExtraAttempt extends Attempt {
  next: ExtraAttempt | undefined = undefined
}

/** A raw login attempt. */
const rawLogin = (
  ctx: RequestContext,
  at: number,
  source: 'passport' | 'sdk',
  outcome: 'succeeded' | 'failed' | 'error',
  strategy: string | null,
  reason: FailureReason | undefined,
  user: unknown,
  identity: Readonly<Record<string, unknown>> | undefined,
  login: string | undefined,
  attempts: StrategyAttempt[] | undefined,
  error: { name: string; code?: string } | undefined,
): RawAttempt => {
  const { req } = ctx
  return new Attempt(
    'login',
    source,
    at,
    req,
    ctx.ip,
    userAgent(req),
    req.res?.statusCode,
    outcome,
    strategy,
    reason,
    user,
    identity,
    login,
    attempts,
    error,
    undefined,
    undefined,
    undefined,
  )
}

/** The request's final logical login outcome: the last strategy that acted decides. */
const loginOutcome = (ctx: RequestContext, at: number): RawAttempt | undefined => {
  // `at` (now) only for a manual outcome recorded without a time; a strategy's is its action's.
  const { manual } = ctx
  let last: AttemptRecord | undefined
  let refused: AttemptRecord | undefined
  let firstLogin: string | undefined
  let count = 0
  for (let a = ctx.first; a !== undefined; a = a.next) count++
  const summary: StrategyAttempt[] = new Array(count)
  let i = 0
  for (let a = ctx.first; a !== undefined; a = a.next) {
    summary[i++] =
      a.reason === undefined
        ? { strategy: a.strategy, outcome: a.outcome }
        : { strategy: a.strategy, outcome: a.outcome, reason: a.reason }
    if (a.outcome !== 'pending') last = a
    if (refused === undefined && a.reason === 'invalid_credentials') refused = a
    if (firstLogin === undefined) firstLogin = a.login
  }
  // The attempted login: the strategy that succeeded, else the first that read one.
  const login = (last?.outcome === 'succeeded' ? last.login : undefined) ?? firstLogin
  const tried = summary.length > 0 ? summary : undefined
  if (manual) {
    const reason = manual.success ? undefined : 'invalid_credentials'
    const outcome = manual.success ? 'succeeded' : 'failed'
    return rawLogin(
      ctx,
      ctx.manualAt || at,
      'sdk',
      outcome,
      null,
      reason,
      undefined,
      manual.identity,
      login,
      tried,
      undefined,
    )
  }
  if (!last) return undefined
  switch (last.outcome) {
    case 'succeeded':
      return rawLogin(
        ctx,
        last.at,
        'passport',
        'succeeded',
        last.strategy,
        undefined,
        last.user,
        undefined,
        login,
        tried,
        undefined,
      )
    case 'error':
      return rawLogin(
        ctx,
        last.at,
        'passport',
        'error',
        last.strategy,
        undefined,
        undefined,
        undefined,
        login,
        tried,
        last.error,
      )
    case 'failed':
      // Right credentials refused by enforcement: the event is about that user.
      if (last.reason === 'blocked') {
        return rawLogin(
          ctx,
          last.at,
          'passport',
          'failed',
          last.strategy,
          'blocked',
          last.user,
          undefined,
          login,
          tried,
          undefined,
        )
      }
      // In a chain every strategy failed; one that was offered credentials and refused
      // them makes the whole request a wrong-credentials failure. With no login to key it
      // by, a failure on a request that already has a user (a second factor after the
      // password: a wrong TOTP code) is about that user, not about nobody.
      return rawLogin(
        ctx,
        (refused ?? last).at,
        'passport',
        'failed',
        (refused ?? last).strategy,
        refused ? 'invalid_credentials' : 'missing_credentials',
        login === undefined ? requestUser(ctx.req) : undefined,
        undefined,
        login,
        tried,
        undefined,
      )
    default:
      // redirect and pass are neutral: an OAuth hop, an anonymous pass-through. Except a
      // pass after a strategy of the chain refused offered credentials: ['local',
      // 'anonymous'] serves a wrong password as an anonymous visitor, and it is still a
      // wrong password (else guessing through such an endpoint would never be counted).
      if (last.outcome !== 'pass' || refused === undefined) return undefined
      return rawLogin(
        ctx,
        refused.at,
        'passport',
        'failed',
        refused.strategy,
        'invalid_credentials',
        login === undefined ? requestUser(ctx.req) : undefined,
        undefined,
        login,
        tried,
        undefined,
      )
  }
}

/** In the contexts map, for a request whose login event went out (see `flush`): a value that holds nothing. */
const TOLD = Symbol('told')

export const createRecorder = (
  config: Config,
  submit: Submit,
  diag: Diagnostics,
  refuseUser: RefusePredicate | undefined,
): Recorder => {
  // One map per recorder: two sqreenAuth() instances observing the same request keep
  // separate contexts and each emits its own events. A WeakMap rather than a property
  // on `req`, so the request object keeps its shape.
  const contexts = new WeakMap<Request, RequestContext | typeof TOLD>()

  const flush = (ctx: RequestContext): void => {
    if (ctx.flushed) return
    ctx.flushed = true
    try {
      const login = loginOutcome(ctx, config.clock())
      if (login) {
        ctx.loggedIn = true
        submit(login)
      }
      for (let extra = ctx.firstExtra; extra !== undefined; extra = extra.next) submit(extra)
    } catch (err) {
      diag.error('capture_failed', 'could not assemble the events of a request', err)
    }
    // The flushed context leaves the map: a later call for the request makes a context of
    // its own. Where a login was told, `TOLD` takes its place, so that a late authTrack
    // can tell (see manual). Never the context itself: V8's young-generation collector
    // keeps a WeakMap's values alive whether or not their key is, so a context left there
    // kept its request (and all the request reaches) alive through every young collection
    // until the next full one: 8 KB more surviving per login request (bench/README).
    const { req } = ctx
    if (contexts.get(req) === ctx) {
      if (ctx.loggedIn || ctx.toldBefore) contexts.set(req, TOLD)
      else contexts.delete(req)
    }
  }

  /**
   * Events are emitted once the application has ended its response (so a later
   * `authTrack` in the route handler still wins, and the status is known), checked
   * on the next turn of the event loop and then with growing delays. Deliberately
   * not a 'finish' / 'close' listener per request: measured, one more listener on
   * every response slowed the whole process's event emitters far more than a
   * `setImmediate` costs.
   */
  const check = (ctx: RequestContext, waited: number): void => {
    const res = ctx.req.res
    if (ctx.flushed) return
    if (!res || res.writableEnded || res.destroyed || waited >= MAX_WAIT) {
      flush(ctx)
      return
    }
    const delay = Math.min(MAX_DELAY, Math.max(MIN_DELAY, waited))
    setTimeout(check, delay, ctx, waited + delay).unref()
  }

  /**
   * Contexts due on the next turn of the event loop share one `setImmediate`: under
   * load several responses end in the same turn, and one immediate per login was a
   * measurable part of the capture cost.
   */
  let firstDue: RequestContext | undefined
  let lastDue: RequestContext | undefined
  const checkDue = (): void => {
    let ctx = firstDue
    firstDue = undefined
    lastDue = undefined
    while (ctx !== undefined) {
      const next = ctx.nextDue
      ctx.nextDue = undefined
      try {
        check(ctx, 0)
      } catch (err) {
        diag.error('capture_failed', 'could not check whether a response had ended', err)
      }
      ctx = next
    }
  }

  const schedule = (ctx: RequestContext): void => {
    if (ctx.scheduled || ctx.flushed) return
    ctx.scheduled = true
    if (lastDue === undefined) {
      firstDue = ctx
      setImmediate(checkDue)
    } else lastDue.nextDue = ctx
    lastDue = ctx
  }

  const contextOf = (req: Request): RequestContext => {
    const existing = contexts.get(req)
    if (existing !== undefined && existing !== TOLD && !existing.flushed) return existing
    const ctx = new RequestContext(req, clientIp(req))
    if (existing === TOLD) ctx.toldBefore = true
    contexts.set(req, ctx)
    return ctx
  }

  const env: AttemptEnv = { refuseUser, diag, settled: schedule, clock: config.clock }

  // Made once, not per login.
  const loginOptionThrew = (err: unknown): void =>
    diag.error('login_option_threw', 'the "login" option threw; the built-in rules were used for this request', err)

  const begin: Recorder['begin'] = (req, strategyName, options, strategy) => {
    // `authorize()` connects a third-party account to an existing session; it is not a login.
    if (options !== null && typeof options === 'object' && (options as { assignProperty?: unknown }).assignProperty) {
      return undefined
    }
    if (req === null || typeof req !== 'object') return undefined
    // An API token checked on every request is not a login (the application says which).
    if (config.ignoreStrategies.size > 0 && config.ignoreStrategies.has(strategyName)) return undefined
    const login = readLogin(req, strategy, strategyName, config.login, loginOptionThrew)
    const ctx = contextOf(req)
    const record = new AttemptRecord(env, ctx, req, strategyName, login, isOAuth2Client(strategy))
    ctx.add(record)
    return record
  }

  return {
    begin,
    manual(req, login) {
      const existing = contexts.get(req)
      // Told already: by a flushed context (TOLD), or by one before the context now open
      // (a trackEvent after the response made a context of its own, not flushed yet).
      if (existing === TOLD || existing?.toldBefore === true) {
        // After the request's login event went out (authTrack from a timer, after the
        // response): a second event for one attempt would count it twice.
        diag.count('sdk_late')
        diag.warn(
          'sdk_late.authTrack',
          "authTrack() was called after this request's login event was emitted (after the response ended); it was ignored. Call it before ending the response.",
        )
        return
      }
      const ctx = contextOf(req)
      schedule(ctx)
      if (ctx.manual === undefined) {
        ctx.manual = login
        ctx.manualAt = config.clock()
        return
      }
      // Another login in the same request (a GraphQL batch of mutations, a bulk endpoint):
      // each call is an attempt, an event of its own; only the first replaces Passport's.
      ctx.addExtra(
        new ExtraAttempt(
          'login',
          'sdk',
          config.clock(),
          req,
          ctx.ip,
          userAgent(req),
          undefined,
          login.success ? 'succeeded' : 'failed',
          null,
          login.success ? undefined : 'invalid_credentials',
          undefined,
          login.identity,
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
        ),
      )
    },
    extra(req, raw) {
      const ctx = contextOf(req)
      schedule(ctx)
      ctx.addExtra(
        new ExtraAttempt(
          raw.kind,
          'sdk',
          config.clock(),
          req,
          ctx.ip,
          userAgent(req),
          raw.status,
          raw.outcome,
          raw.strategy,
          raw.reason,
          raw.user,
          raw.identity,
          raw.login,
          raw.attempts,
          raw.error,
          raw.name,
          raw.severity,
          raw.properties,
        ),
      )
    },
  }
}
