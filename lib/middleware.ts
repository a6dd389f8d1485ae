import type { NextFunction, Request, Response } from 'express'
import { observePassport } from './capture/passport-observer.js'
import { createRecorder, type RefusePredicate } from './capture/recorder.js'
import { requestUser } from './capture/request-facts.js'
import { createSdk, type Sdk } from './capture/sdk.js'
import { createDiagnostics, type DiagnosticsSnapshot } from './diagnostics.js'
import { BlockList, refuse } from './enforcement.js'
import { createIdentityBoundary } from './identity/boundary.js'
import { createDispatcher } from './notify/dispatcher.js'
import { type FetchLike, nodeFetch } from './notify/http.js'
import { type Options, type OptionsInput, resolveOptions } from './options.js'
import { createPipeline, type EventSink } from './pipeline.js'
import { createRiskEngine, type ScoredEvent, scoringSettings } from './risk/engine.js'
import { keyedIpRef } from './risk/ip.js'
import { decayedPoints, type RiskSnapshot } from './risk/ledger.js'
import { MemoryStore } from './store/memory.js'
import { createForwarder } from './transport/forwarder.js'

export interface SqreenAuth extends Sdk {
  /** Express middleware: `app.use(sqreen)` after `passport.initialize()`, before your routes. */
  (req: Request, res: Response, next: NextFunction): void
  /**
   * Observes a strategy object that you pass directly to `passport.authenticate(strategy)`
   * in middleware built *before* `sqreenAuth()` was called; returns a derived strategy and
   * leaves yours untouched. Middleware built after is observed automatically.
   */
  watch<T extends object>(strategy: T): T
  /** A user's risk: standing score, 24-hour rise and the ledger entries that explain them. */
  risk(userKey: string): Promise<RiskSnapshot>
  /** Whether the request's user is above the `block` level (always `false` without `block`). */
  isBlocked(req: Request): boolean
  /**
   * Lifts a user's block in this process (`userKey` as alerts and `risk()` name it: `id:42`,
   * or `login:<key>` for failures not yet linked to their account). The points behind it (and
   * what the store's ledger holds, shared with other processes) are forgiven as they decay,
   * until the next wrong password for that user; new points block again once they alone pass
   * the level. Resolves `true` when the user was blocked, here or by the store's points;
   * `false` otherwise (or without `block`). Per process and in memory: call it in each.
   */
  unblock(userKey: string): Promise<boolean>
  /** Counters and problem counts (fail-open bookkeeping). */
  stats(): DiagnosticsSnapshot
  /** Waits for events and alert deliveries in flight (bounded), then releases timers, hooks and the store it created. Idempotent. */
  close(): Promise<void>
}

/**
 * Observes every Passport login of the application. Options are validated here,
 * once; a configuration mistake throws a `SqreenAuthError` with a stable code.
 */
export const sqreenAuth = (options: OptionsInput<Options> = {}): SqreenAuth => {
  const config = resolveOptions(options)
  const diag = createDiagnostics(config.logger)
  const store = config.store ?? new MemoryStore()
  const dispatcher = createDispatcher(config, diag)
  const blocklist = config.block ? new BlockList(config.block.above, config.halfLifeMs, config.clock) : undefined
  const engine = createRiskEngine(
    {
      ...scoringSettings(config),
      store,
      onAlert: (alert) => dispatcher.dispatch(alert),
      ...(blocklist
        ? {
            onScore: (
              userKey: string,
              score: number,
              uncapped: number,
              pointsAt: (at: number) => number,
              scored: ScoredEvent,
            ) => blocklist.update(userKey, score, uncapped, pointsAt, scored),
          }
        : {}),
      // No client address reaches the store in advanced mode, as no e-mail or login does.
      ...(config.mode === 'advanced' && config.secret ? { ipRef: keyedIpRef(config.secret) } : {}),
    },
    diag,
  )
  const boundary = createIdentityBoundary(config, diag, blocklist ? (userKey) => blocklist.has(userKey) : undefined)
  const sinks: EventSink[] = config.scoring ? [(event) => engine.process(event)] : []
  if (config.onEvent) sinks.push(config.onEvent)
  const forwarder = config.forward
    ? createForwarder(config.forward, config.fetch ? async () => config.fetch as FetchLike : nodeFetch, diag)
    : undefined
  if (forwarder) {
    // Returns nothing: the pipeline never waits for the hub.
    sinks.push((event) => void forwarder.push(event))
    const { hostname, protocol } = new URL(config.forward?.url ?? '')
    if (protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
      diag.warn(
        'forward_plain_http',
        'forward.url is plain http: batches are signed but not encrypted, so events (identities, IPs) can be read on the way; use https.',
      )
    }
  }
  const pipeline = createPipeline(boundary, sinks, config.maxPending, diag)

  /**
   * The user's key, or the login typed: failures of a login not yet linked to its user (the
   * first success since this process started, as links are kept in memory) are scored under
   * the login's key, and are merged into the user's ledger only after this success. Without
   * the login's key the success that ends a brute force would get in.
   */
  const isBlockedUser = (user: unknown, login?: string): false | 'blocked' | 'other' => {
    if (!blocklist?.active) return false
    const key = boundary.userKeyOfUser(user)
    if (typeof key === 'string' && blocklist.has(key)) return 'blocked'
    if (key === undefined) {
      diag.warn(
        'block_identify_async',
        'identify() returned a promise, which the block check cannot wait for on the request path: users are checked by the login they typed only. Make identify synchronous to block users by their key.',
      )
    }
    if (login === undefined) return false
    // The login typed: failures not yet linked to their user count under it.
    if (blocklist.has(boundary.loginKeyOf(login))) return 'blocked'
    // A success is judged by its own account only (above), never by another account's block
    // (a look-alike's, or the same e-mail in another tenant).
    if (typeof key === 'string') return false
    const links = boundary.linksOf(login)
    // The account the login is linked to, however typed: with an async identify (`key`
    // undefined) the link is the only way to know whose success this is. A failure typed
    // otherwise than that account typed it is not counted against it: refused all the same
    // (a blocked account's login answers the same whatever the password), but scored.
    if (links.current !== undefined && blocklist.has(links.current)) {
      return links.typedAsCurrent || key === undefined ? 'blocked' : 'other'
    }
    if (key === undefined) return false
    // A failure: the accounts the login was linked to before (a look-alike re-linked it).
    for (const other of links.others) if (blocklist.has(other)) return 'other'
    return false
  }
  const refuseUser: RefusePredicate | undefined = blocklist ? isBlockedUser : undefined
  const recorder = createRecorder(config, (raw) => pipeline.submit(raw), diag, refuseUser)
  const isBlocked = (req: Request): boolean => {
    try {
      return isBlockedUser(requestUser(req)) !== false
    } catch (err) {
      diag.error('block_check_failed', 'could not check whether a user is blocked; the request was allowed', err)
      return false
    }
  }
  const blockAll = config.block?.scope === 'all'
  const skip = config.block?.skip
  /**
   * With `scope: 'all'`, whether a request is refused: its user is blocked and `block.skip`
   * does not let it through (a logout route: without it a blocked session could not even end
   * itself). A `skip` that throws lets the request through: blocking fails open.
   */
  const refusedForAll = (req: Request): boolean => {
    if (!isBlocked(req)) return false
    if (skip === undefined) return true
    let skipped: unknown
    try {
      skipped = skip(req)
    } catch (err) {
      diag.error('block_skip_threw', 'the "block.skip" option threw; the request was allowed', err)
      return false
    }
    if (skipped !== null && typeof (skipped as { then?: unknown })?.then === 'function') {
      // The request path cannot wait: a promise is no answer. Its rejection is caught here (an
      // unhandled one ended the process), and the request is let through: blocking fails open.
      ;(skipped as Promise<unknown>).then(undefined, () => {})
      diag.warn(
        'block_skip_async',
        '"block.skip" returned a promise; it must answer synchronously (the request path never waits). The request was allowed.',
      )
      return false
    }
    // Truthy, as a filter's callback: `(req) => req.path.match(/logout/)` skips too.
    return !skipped
  }
  const observer = observePassport(
    config.passport,
    recorder,
    diag,
    (req) => {
      if (req.res) refuse(req, req.res)
    },
    blockAll ? refusedForAll : undefined,
  )
  const sdk = createSdk(recorder, diag)
  let closing: Promise<void> | undefined

  /**
   * Whether the requests' `passport.initialize()` is the observed Authenticator's, decided
   * once. Passport's `initialize()` sets `req._sessionManager` to its Authenticator's `_sm`:
   * another one means the app authenticates with another Authenticator, typically a second
   * copy of the passport package (a monorepo or a linked install, where `sqreenAuth()`
   * without `passport` loads its own copy), and no login would ever be observed, silently.
   * Checked until a request shows one or the other (a request without one, when this
   * middleware runs before `initialize()`, decides nothing); then never again.
   */
  let authenticatorChecked = false
  const checkAuthenticator = (req: Request): void => {
    const seen = (req as { _sessionManager?: unknown })._sessionManager
    if (seen === undefined) return
    authenticatorChecked = true
    if (seen === (config.passport as { _sm?: unknown })._sm) return
    diag.warn(
      'passport_not_observed',
      "requests are initialised by another Passport Authenticator than the one sqreen-auth observes, so its logins are not seen. Pass the app's own: sqreenAuth({ passport }) with the passport object your app imports (a second copy of the passport package does this too). Ignore this if the app uses two Authenticators on purpose.",
    )
  }

  // Capture happens in Passport's own action functions, so the middleware itself
  // does (almost) nothing per request: non-login requests pay only for this call.
  const middleware = (req: Request, res: Response, next: NextFunction): void => {
    if (!authenticatorChecked) checkAuthenticator(req)
    if (blockAll && blocklist?.active === true && refusedForAll(req)) refuse(req, res)
    else next()
  }

  return Object.assign(middleware, {
    authTrack: sdk.authTrack,
    signupTrack: sdk.signupTrack,
    trackEvent: sdk.trackEvent,
    watch: observer.watch,
    risk: (userKey: string) => engine.risk(userKey),
    isBlocked,
    unblock: async (userKey: string): Promise<boolean> => {
      if (blocklist === undefined || typeof userKey !== 'string') return false
      const lifted = blocklist.unblock(userKey)
      // And what the store's ledger holds now: with a store shared by several processes, one
      // that never blocked the user (and so has nothing to forgive) would block them at their
      // next event for points another process scored. `risk` never throws (an outage answers
      // `unavailable`): then only this process's own record is forgiven.
      const risk = await engine.risk(userKey)
      let above = false
      if (risk.unavailable !== true) {
        const points = decayedPoints(risk.entries, config.clock(), {
          halfLifeMs: config.halfLifeMs,
          maxScore: config.maxScore,
          windowMs: 0,
        })
        blocklist.forgive(userKey, points)
        above = points > (config.block?.above ?? Number.POSITIVE_INFINITY)
      }
      if (lifted || above) diag.count('unblocked')
      return lifted || above
    },
    stats: () => diag.snapshot(),
    close: () => {
      closing ??= (async () => {
        observer.close()
        await pipeline.drain()
        await Promise.all([dispatcher.close(config.delivery.closeTimeoutMs), forwarder?.close()])
        // A store passed in belongs to the application (it may be shared); one we made is ours.
        if (config.store === undefined) await store.close()
      })()
      return closing
    },
  })
}
