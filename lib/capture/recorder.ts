import type { Request } from 'express'
import type { Diagnostics } from '../diagnostics.js'
import type { FailureReason, StrategyAttempt } from '../event.js'
import type { Config } from '../options.js'
import { classifyFailure, readLogin } from './login.js'
import type { RawAttempt, Submit } from './raw.js'
import { clientIp, userAgent } from './request-facts.js'

type Outcome = StrategyAttempt['outcome']

/** Receives the action a strategy took for one request; the first action wins. */
export interface Tracker {
  /** Records a success; `true` when opt-in enforcement refuses this user's login. */
  succeeded(user: unknown): boolean
  failed(challenge: unknown, status: unknown): void
  errored(err: unknown): void
  redirected(): void
  passed(): void
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

/**
 * Everything observed during one request. It is flushed once the response has
 * been handed to Express ('finish' or 'close'), so events never delay the
 * response and a chain of strategies yields one logical outcome.
 */
interface RequestContext {
  readonly req: Request
  readonly attempts: AttemptRecord[]
  manual: ManualLogin | undefined
  readonly extras: RawAttempt[]
  flushed: boolean
}

type WithContext = Request & Record<symbol, RequestContext | undefined>

/** Answers whether a successfully authenticated user must be refused (opt-in enforcement). */
export type RefusePredicate = (user: unknown) => boolean

/** What every attempt of one recorder shares. */
interface AttemptEnv {
  readonly refuseUser: RefusePredicate | undefined
  readonly diag: Diagnostics
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

  constructor(
    readonly env: AttemptEnv,
    readonly req: Request,
    readonly strategy: string,
    readonly login: string | undefined,
  ) {}

  succeeded(user: unknown): boolean {
    if (this.outcome !== 'pending') return false
    this.outcome = 'succeeded'
    this.user = user
    const { refuseUser, diag } = this.env
    if (refuseUser === undefined) return false
    let refused = false
    try {
      refused = refuseUser(user)
    } catch (err) {
      diag.error('block_check_failed', 'could not check whether a user is blocked; the login was allowed', err)
    }
    if (refused) {
      this.outcome = 'failed'
      this.reason = 'blocked'
    }
    return refused
  }

  failed(challenge: unknown, status: unknown): void {
    if (this.outcome !== 'pending') return
    this.outcome = 'failed'
    this.reason = classifyFailure(this.req, challenge, status)
  }

  errored(err: unknown): void {
    if (this.outcome !== 'pending') return
    this.outcome = 'error'
    this.error = errorFacts(err)
  }

  redirected(): void {
    if (this.outcome === 'pending') this.outcome = 'redirect'
  }

  passed(): void {
    if (this.outcome === 'pending') this.outcome = 'pass'
  }
}

const errorFacts = (err: unknown): { name: string; code?: string } => {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return typeof code === 'string' ? { name: err.name, code } : { name: err.name }
  }
  return { name: typeof err }
}

/** The request's final logical login outcome: the last strategy that acted decides. */
const loginOutcome = (ctx: RequestContext, at: number): RawAttempt | undefined => {
  const { attempts, manual, req } = ctx
  const decided = attempts.filter((a) => a.outcome !== 'pending')
  const last = decided[decided.length - 1]
  const summary: StrategyAttempt[] = attempts.map((a) =>
    a.reason === undefined
      ? { strategy: a.strategy, outcome: a.outcome }
      : { strategy: a.strategy, outcome: a.outcome, reason: a.reason },
  )
  // The attempted login: the strategy that succeeded, else the first that read one.
  const login =
    (last?.outcome === 'succeeded' ? last.login : undefined) ?? attempts.find((a) => a.login !== undefined)?.login
  const base = {
    kind: 'login' as const,
    at,
    req,
    ip: clientIp(req),
    userAgent: userAgent(req),
    status: req.res?.statusCode,
    login,
    attempts: summary.length > 0 ? summary : undefined,
  }
  if (manual) {
    return {
      ...base,
      source: 'sdk',
      outcome: manual.success ? 'succeeded' : 'failed',
      strategy: null,
      reason: manual.success ? undefined : 'invalid_credentials',
      identity: manual.identity,
    }
  }
  if (!last) return undefined
  switch (last.outcome) {
    case 'succeeded':
      return { ...base, source: 'passport', outcome: 'succeeded', strategy: last.strategy, user: last.user }
    case 'error':
      return { ...base, source: 'passport', outcome: 'error', strategy: last.strategy, error: last.error }
    case 'failed': {
      if (last.reason === 'blocked') {
        // Right credentials, refused by enforcement: the event is about that user.
        return {
          ...base,
          source: 'passport',
          outcome: 'failed',
          strategy: last.strategy,
          reason: 'blocked',
          user: last.user,
        }
      }
      // In a chain every strategy failed; one that was offered credentials and refused
      // them makes the whole request a wrong-credentials failure.
      const refused = decided.find((a) => a.reason === 'invalid_credentials')
      return {
        ...base,
        source: 'passport',
        outcome: 'failed',
        strategy: (refused ?? last).strategy,
        reason: refused ? 'invalid_credentials' : 'missing_credentials',
      }
    }
    default:
      // redirect and pass are neutral: an OAuth hop, an anonymous pass-through.
      return undefined
  }
}

export const createRecorder = (
  config: Config,
  submit: Submit,
  diag: Diagnostics,
  refuseUser: RefusePredicate | undefined,
): Recorder => {
  // One key per recorder: two sqreenAuth() instances observing the same request keep
  // separate contexts and each emits its own events.
  const kContext = Symbol('sqreen-auth.context')
  const env: AttemptEnv = { refuseUser, diag }
  const flush = (ctx: RequestContext): void => {
    if (ctx.flushed) return
    ctx.flushed = true
    // Not `delete`: that would turn the request object into a slow dictionary.
    if ((ctx.req as WithContext)[kContext] === ctx) (ctx.req as WithContext)[kContext] = undefined
    try {
      const login = loginOutcome(ctx, config.clock())
      if (login) submit(login)
      for (const extra of ctx.extras) submit(extra)
    } catch (err) {
      diag.error('capture_failed', 'could not assemble the events of a request', err)
    }
  }

  const contextOf = (req: Request): RequestContext => {
    const existing = (req as WithContext)[kContext]
    if (existing && !existing.flushed) return existing
    const ctx: RequestContext = { req, attempts: [], manual: undefined, extras: [], flushed: false }
    ;(req as WithContext)[kContext] = ctx
    const res = req.res
    if (res && typeof res.once === 'function' && !res.writableFinished && !res.destroyed) {
      // 'close' follows 'finish' for every completed response and also marks an aborted one.
      res.once('close', () => flush(ctx))
    } else {
      // No response to wait for (not an Express request, or it already ended):
      // flush once the current synchronous work is done.
      setImmediate(() => flush(ctx))
    }
    return ctx
  }

  const begin: Recorder['begin'] = (req, strategyName, options, strategy) => {
    // `authorize()` connects a third-party account to an existing session; it is not a login.
    if (options !== null && typeof options === 'object' && (options as { assignProperty?: unknown }).assignProperty) {
      return undefined
    }
    if (req === null || typeof req !== 'object') return undefined
    const login = readLogin(req, strategy, strategyName, config.login, (err) =>
      diag.error('login_option_threw', 'the "login" option threw; the built-in rules were used for this request', err),
    )
    const record = new AttemptRecord(env, req, strategyName, login)
    contextOf(req).attempts.push(record)
    return record
  }

  return {
    begin,
    manual(req, login) {
      contextOf(req).manual = login
    },
    extra(req, raw) {
      contextOf(req).extras.push({
        ...raw,
        source: 'sdk',
        at: config.clock(),
        req,
        ip: clientIp(req),
        userAgent: userAgent(req),
      })
    },
  }
}
