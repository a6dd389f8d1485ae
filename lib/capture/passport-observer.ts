import type { Request } from 'express'
import type { Diagnostics } from '../diagnostics.js'
import { SqreenAuthError } from '../errors.js'
import type { ObservedPassport } from '../options.js'
import type { Recorder, Tracker } from './recorder.js'

type Action = (...args: unknown[]) => unknown

interface StrategyLike {
  name?: unknown
  authenticate(this: StrategyLike, req: Request, options?: unknown): unknown
  success?: Action
  fail?: Action
  error?: Action
  redirect?: Action
  pass?: Action
}

export interface PassportObserver {
  /** A derived, observed strategy for one passed directly to `passport.authenticate(strategy)`. */
  watch<T extends object>(strategy: T): T
  /** Puts the Authenticator back as it was (when no later observer wrapped it since). */
  close(): void
}

const isStrategy = (value: unknown): value is StrategyLike =>
  value !== null && typeof value === 'object' && typeof (value as StrategyLike).authenticate === 'function'

// The session strategy restores a login from the session on every request; it is never a login.
const isSessionStrategy = (name: string): boolean => name === 'session'

/**
 * The TypeError V8 throws when code reads a class's `#private` member (or calls a private
 * method) on an object that is not an instance of that class, as a per-request object
 * derived from the strategy is not.
 */
const isPrivateAccessError = (err: unknown): boolean =>
  err instanceof TypeError && /private member|Receiver must be an instance of class/.test(err.message)

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function'

const ACTIONS = ['success', 'fail', 'error', 'redirect', 'pass'] as const

const strategyName = (strategy: StrategyLike): string =>
  typeof strategy.name === 'string' && strategy.name !== '' ? strategy.name : 'anonymous'

/**
 * Observes a Passport Authenticator without touching the application's strategy
 * objects. Passport builds a per-request instance with `Object.create(strategy)`
 * and assigns its action functions (`success`, `fail`, ...) to it; we hand
 * passport a *derived* object instead (`Object.create(original)` with an
 * observing `authenticate`), so the original is never mutated and strategies
 * registered before or after `sqreenAuth()` are all seen.
 */
export const observePassport = (
  passport: ObservedPassport,
  recorder: Recorder,
  diag: Diagnostics,
  refuseLogin: (req: Request) => void,
  refuseRestored?: (req: Request) => boolean,
): PassportObserver => {
  let active = true
  const derivedByName = new WeakMap<object, Map<string, StrategyLike>>()
  const derivedObjects = new WeakSet<object>()
  /**
   * Strategy objects (passed directly to `authenticate`) that only work on themselves:
   * their class reads `#private` members, which a derived per-request object does not have.
   * They get what Passport gives them without sqreen-auth: the actions assigned to the
   * object itself (observed all the same), and Passport's own hazard with an async verify.
   */
  const selfOnly = new WeakSet<object>()

  const recordFailed = (err: unknown): void => diag.error('capture_failed', 'could not record a strategy action', err)
  /** A strategy's authenticate threw before it acted: recorded as its error (never thrown from here). */
  const recordThrown = (t: Tracker, err: unknown): void => {
    try {
      t.errored(err)
    } catch (e) {
      recordFailed(e)
    }
  }

  const derive = (original: StrategyLike, name: string): StrategyLike => {
    let byName = derivedByName.get(original)
    const cached = byName?.get(name)
    if (cached) return cached

    const derived = Object.create(original) as StrategyLike
    Object.defineProperty(derived, 'authenticate', {
      configurable: true,
      writable: true,
      value: function observedAuthenticate(this: StrategyLike, req: Request, options?: unknown): unknown {
        if (!active) return original.authenticate.call(this, req, options)
        // Capture this request's action functions *now*, synchronously. Passport assigns
        // them just before calling authenticate; for a strategy object passed directly to
        // `authenticate(strategy)` it assigns them to that one shared object, so a later
        // request would overwrite them while an async verify is still running. The
        // strategy runs on a per-request instance holding the captured actions, so its
        // verify callback always answers its own request.
        const { success, fail, error, redirect, pass } = this
        let tracker: Tracker | undefined
        try {
          tracker = recorder.begin(req, name, options, original)
        } catch (err) {
          diag.error('capture_failed', 'could not start observing a login attempt', err)
        }
        if (tracker === undefined || typeof success !== 'function' || typeof fail !== 'function') {
          return original.authenticate.call(this, req, options)
        }
        const t = tracker
        // Passport already made `this` per request for a named strategy; only a strategy
        // object passed directly (`this` is the shared derived object) needs its own.
        const instance = this === derived ? (Object.create(this) as StrategyLike) : this
        // One closure per action, all sharing this call's scope (no per-action helper
        // closures): they run on every login. Closures rather than methods because a
        // strategy may call its actions unbound (`const fail = this.fail; fail()`).
        // Each forwards exactly the arguments it was given (`arguments`, not a rest array:
        // V8 passes them through `apply` without building an array, on every login).
        instance.success = function observedSuccess(this: unknown, user?: unknown) {
          let refused = false
          try {
            refused = t.succeeded(user)
          } catch (err) {
            recordFailed(err)
          }
          // Opt-in enforcement: the user is above the block level, answer 403 instead of logging in.
          if (refused) return refuseLogin(req)
          // biome-ignore lint/complexity/noArguments: forwarded as given, without an array per call
          return success.apply(this, arguments as unknown as unknown[])
        }
        instance.fail = function observedFail(this: unknown, challenge?: unknown, status?: unknown) {
          let refused = false
          try {
            // passport accepts fail(status) as well as fail(challenge, status).
            if (typeof challenge === 'number') refused = t.failed(undefined, challenge)
            else refused = t.failed(challenge, status)
          } catch (err) {
            recordFailed(err)
          }
          // Opt-in enforcement: a blocked login is refused whatever the password (see `failed`).
          if (refused) return refuseLogin(req)
          // biome-ignore lint/complexity/noArguments: forwarded as given, without an array per call
          return fail.apply(this, arguments as unknown as unknown[])
        }
        if (typeof error === 'function') {
          instance.error = function observedError(this: unknown, err?: unknown) {
            try {
              t.errored(err)
            } catch (e) {
              recordFailed(e)
            }
            // biome-ignore lint/complexity/noArguments: forwarded as given, without an array per call
            return error.apply(this, arguments as unknown as unknown[])
          }
        }
        if (typeof redirect === 'function') {
          instance.redirect = function observedRedirect(this: unknown) {
            try {
              t.redirected()
            } catch (err) {
              recordFailed(err)
            }
            // biome-ignore lint/complexity/noArguments: forwarded as given, without an array per call
            return redirect.apply(this, arguments as unknown as unknown[])
          }
        }
        if (typeof pass === 'function') {
          instance.pass = function observedPass(this: unknown) {
            try {
              t.passed()
            } catch (err) {
              recordFailed(err)
            }
            // biome-ignore lint/complexity/noArguments: forwarded as given, without an array per call
            return pass.apply(this, arguments as unknown as unknown[])
          }
        }
        // A named strategy runs on Passport's own per-request object, as it would without us.
        // A strategy that throws instead of calling error() (a bug, a driver throwing
        // synchronously) is a login.error too; the exception goes on to Express unchanged.
        if (instance === this) {
          try {
            return original.authenticate.call(instance, req, options)
          } catch (err) {
            // Recorded only: Passport's own error() would hand it to Express a second time.
            if (!t.acted()) recordThrown(t, err)
            throw err
          }
        }
        const onItself = (): unknown => {
          selfOnly.add(original)
          const target = original as unknown as Record<string, unknown>
          for (const action of ACTIONS) if (instance[action] !== undefined) target[action] = instance[action]
          return original.authenticate.call(original, req, options)
        }
        if (selfOnly.has(original)) return onItself()
        // Fail open: a class with `#private` members throws on the derived object before it
        // acts; it is then run on itself, as Passport would run it, rather than break the login.
        try {
          const result = original.authenticate.call(instance, req, options)
          if (!isThenable(result)) return result
          return Promise.resolve(result).then(undefined, (err: unknown) => {
            if (isPrivateAccessError(err) && !t.acted()) return onItself()
            throw err
          })
        } catch (err) {
          if (isPrivateAccessError(err) && !t.acted()) return onItself()
          if (!t.acted()) recordThrown(t, err)
          throw err
        }
      },
    })
    derivedObjects.add(derived)
    if (!byName) {
      byName = new Map()
      derivedByName.set(original, byName)
    }
    byName.set(name, derived)
    return derived
  }

  const watch = <T extends object>(strategy: T): T => {
    if (!isStrategy(strategy)) {
      throw new SqreenAuthError(
        'ERR_SQREEN_WATCH',
        'watch() takes a Passport strategy object (something with an authenticate method).',
      )
    }
    if (derivedObjects.has(strategy)) return strategy
    const name = strategyName(strategy)
    return (isSessionStrategy(name) ? strategy : derive(strategy, name)) as T
  }

  // Strategy objects passed straight to authenticate() never go through _strategy();
  // swap them for observed derivations when the middleware is built.
  const mapLayers = (layers: unknown): unknown => {
    if (Array.isArray(layers)) return layers.map(mapLayers)
    return isStrategy(layers) ? watch(layers) : layers
  }

  const target = passport as unknown as Record<string, unknown>
  const hadOwn = {
    _strategy: Object.hasOwn(target, '_strategy'),
    authenticate: Object.hasOwn(target, 'authenticate'),
  }
  const originalStrategy = passport._strategy
  const originalAuthenticate = passport.authenticate

  /**
   * Only with `block: { scope: 'all' }`: the session strategy restores `req.user` on every
   * request; a restored user who is blocked is refused there, whatever the order of
   * `app.use(sqreen)` and `passport.session()`. It is still never recorded as a login.
   */
  let sessionDerived: { original: StrategyLike; derived: StrategyLike } | undefined
  const deriveSession = (original: StrategyLike, check: (req: Request) => boolean): StrategyLike => {
    if (sessionDerived?.original === original) return sessionDerived.derived
    const derived = Object.create(original) as StrategyLike
    Object.defineProperty(derived, 'authenticate', {
      configurable: true,
      writable: true,
      value: function guardedSession(this: StrategyLike, req: Request, options?: unknown): unknown {
        const { pass } = this
        if (active && typeof pass === 'function') {
          this.pass = function refusingPass(this: unknown, ...args: unknown[]) {
            let refused = false
            try {
              refused = check(req)
            } catch (err) {
              diag.error(
                'block_check_failed',
                'could not check whether a user is blocked; the request was allowed',
                err,
              )
            }
            return refused ? refuseLogin(req) : pass.apply(this, args)
          }
        }
        return original.authenticate.call(this, req, options)
      },
    })
    derivedObjects.add(derived)
    sessionDerived = { original, derived }
    return derived
  }

  const hookedStrategy = function (this: unknown, name: string): unknown {
    const strategy = originalStrategy.call(this, name)
    if (!active || !isStrategy(strategy) || derivedObjects.has(strategy)) return strategy
    if (isSessionStrategy(name)) return refuseRestored ? deriveSession(strategy, refuseRestored) : strategy
    try {
      return derive(strategy, name)
    } catch (err) {
      diag.error('capture_failed', 'could not observe a strategy', err)
      return strategy
    }
  }
  const hookedAuthenticate = function (this: unknown, strategy: unknown, ...rest: unknown[]): unknown {
    let layers = strategy
    if (active) {
      try {
        layers = mapLayers(strategy)
      } catch (err) {
        diag.error('capture_failed', 'could not observe a strategy object', err)
      }
    }
    return originalAuthenticate.call(this, layers, ...rest)
  }
  target._strategy = hookedStrategy
  target.authenticate = hookedAuthenticate

  return {
    watch,
    close() {
      active = false
      // Only unhook what is still ours; if another observer wrapped us since, our
      // (now inactive) wrappers stay in its chain and simply pass through.
      for (const [key, hooked, original] of [
        ['_strategy', hookedStrategy, originalStrategy],
        ['authenticate', hookedAuthenticate, originalAuthenticate],
      ] as const) {
        if (target[key] !== hooked) continue
        if (hadOwn[key]) target[key] = original
        else delete target[key]
      }
    },
  }
}
