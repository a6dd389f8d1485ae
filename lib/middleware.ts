import type { NextFunction, Request, Response } from 'express'
import { observePassport } from './capture/passport-observer.js'
import { createRecorder } from './capture/recorder.js'
import { createSdk, type Sdk } from './capture/sdk.js'
import { createDiagnostics, type DiagnosticsSnapshot } from './diagnostics.js'
import { createIdentityBoundary } from './identity/boundary.js'
import { type Options, resolveOptions } from './options.js'
import { createPipeline, type EventSink } from './pipeline.js'

export interface SqreenAuth extends Sdk {
  /** Express middleware: `app.use(sqreen)` after `passport.initialize()`, before your routes. */
  (req: Request, res: Response, next: NextFunction): void
  /**
   * Observes a strategy object that you pass directly to `passport.authenticate(strategy)`
   * in middleware built *before* `sqreenAuth()` was called; returns a derived strategy and
   * leaves yours untouched. Middleware built after is observed automatically.
   */
  watch<T extends object>(strategy: T): T
  /** Counters and problem counts (fail-open bookkeeping). */
  stats(): DiagnosticsSnapshot
  /** Waits for events in flight, then unhooks Passport. Idempotent. */
  close(): Promise<void>
}

/**
 * Observes every Passport login of the application. Options are validated here,
 * once; a configuration mistake throws a `SqreenAuthError` with a stable code.
 */
export const sqreenAuth = (options: Partial<Options> = {}): SqreenAuth => {
  const config = resolveOptions(options)
  const diag = createDiagnostics(config.logger)
  const sinks: EventSink[] = []
  if (config.onEvent) sinks.push(config.onEvent)
  const pipeline = createPipeline(createIdentityBoundary(config, diag), sinks, config.maxPending, diag)
  const recorder = createRecorder(config, (raw) => pipeline.submit(raw), diag)
  const observer = observePassport(config.passport, recorder, diag)
  const sdk = createSdk(recorder, diag)
  let closing: Promise<void> | undefined

  // Capture happens in Passport's own action functions, so the middleware itself
  // does nothing per request: non-login requests pay only for this call.
  const middleware = (_req: Request, _res: Response, next: NextFunction): void => next()

  return Object.assign(middleware, {
    authTrack: sdk.authTrack,
    signupTrack: sdk.signupTrack,
    trackEvent: sdk.trackEvent,
    watch: observer.watch,
    stats: () => diag.snapshot(),
    close: () => {
      closing ??= (async () => {
        observer.close()
        await pipeline.drain()
      })()
      return closing
    },
  })
}
