import type { Request } from 'express'
import type { Diagnostics } from '../diagnostics.js'
import { didYouMean } from '../errors.js'
import type { Severity } from '../event.js'
import type { Recorder } from './recorder.js'
import { requestUser } from './request-facts.js'

export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical']

export interface TrackEventOptions {
  /** How serious the event is; it sets how much the user's risk rises. Defaults to `'low'`. */
  severity?: Severity
  /** Flat facts about the event (strings, numbers, booleans). */
  properties?: Record<string, string | number | boolean>
  /** Whom the event is about. Defaults to the request's user (`req.user`). */
  identity?: Record<string, string | number>
}

/** Manual tracking, like Sqreen's `auth_track` / `signup_track` / `track`. */
export interface Sdk {
  /** Records a login outcome for `req`; it replaces what automatic capture saw for that request. */
  authTrack(req: Request, success: boolean, identity: Record<string, string | number>): void
  /** Records a sign-up of the user `identity` names (a `signup` event; it scores only a throwaway or relay e-mail domain). */
  signupTrack(req: Request, identity: Record<string, string | number>): void
  /**
   * Records an attack or suspicious action the application detected (`custom` event): it
   * raises the user's risk by its severity (low 2, medium 5, high 10, critical 20). About
   * `options.identity`, else the request's user. Never throws: bad arguments are counted and logged once.
   */
  trackEvent(req: Request, name: string, options?: TrackEventOptions): void
}

const EVENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/
const TRACK_EVENT_OPTIONS: readonly string[] = ['severity', 'properties', 'identity']

const isRequest = (req: unknown): req is Request =>
  req !== null && typeof req === 'object' && typeof (req as { headers?: unknown }).headers === 'object'

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)

/**
 * An identity as given, copied (a later change by the caller does not change the event)
 * when it is a plain object; anything else (a class or ORM instance, whose own fields
 * include its internals) is passed as it is, for the identity guard to refuse whole:
 * copied, it would look like a plain object (a Sequelize instance's `uniqno: 1` made
 * every user one identity).
 */
const copied = (identity: Record<string, unknown>): Record<string, unknown> => {
  const proto = Object.getPrototypeOf(identity)
  return proto === Object.prototype || proto === null ? { ...identity } : identity
}

/**
 * Bad arguments are the application's bug, but a monitoring call must never be
 * the thing that breaks a login: they are logged once, counted and ignored.
 */
export const createSdk = (recorder: Recorder, diag: Diagnostics): Sdk => {
  const guard = (method: string, fn: () => void): void => {
    try {
      fn()
    } catch (err) {
      diag.error('sdk_failed', `${method}() failed internally and was ignored`, err)
    }
  }
  const bad = (method: string, what: string): void => {
    diag.count('sdk_bad_arguments')
    // One warning per distinct mistake (method + what was wrong), counted every time.
    const kind = what.replace(/[^A-Za-z]+/g, '_').slice(0, 48)
    diag.warn(`sdk_bad_arguments.${method}.${kind}`, `${method}() was called with ${what}; the call was ignored.`)
  }

  return {
    authTrack(req, success, identity) {
      guard('authTrack', () => {
        if (!isRequest(req)) return bad('authTrack', 'something that is not a request as its first argument')
        if (typeof success !== 'boolean') return bad('authTrack', 'a non-boolean "success" (second argument)')
        if (!isRecord(identity)) return bad('authTrack', 'an identity that is not an object (third argument)')
        recorder.manual(req, { success, identity: copied(identity) })
      })
    },
    signupTrack(req, identity) {
      guard('signupTrack', () => {
        if (!isRequest(req)) return bad('signupTrack', 'something that is not a request as its first argument')
        if (!isRecord(identity)) return bad('signupTrack', 'an identity that is not an object (second argument)')
        recorder.extra(req, { kind: 'signup', identity: copied(identity) })
      })
    },
    trackEvent(req, name, options = {}) {
      guard('trackEvent', () => {
        if (!isRequest(req)) return bad('trackEvent', 'something that is not a request as its first argument')
        if (typeof name !== 'string' || !EVENT_NAME.test(name)) {
          return bad('trackEvent', 'an invalid event name (1-64 letters, digits, "_", ".", ":" or "-")')
        }
        if (!isRecord(options)) return bad('trackEvent', 'options that are not an object')
        const opts: TrackEventOptions = options
        // A typo such as "severty" must not pass silently for the default: said once (one kind,
        // whatever the key: options built from request data must not grow the log or the
        // problem map), counted per call, and the event still recorded with the known options.
        const unknown = Object.keys(opts).find((key) => !TRACK_EVENT_OPTIONS.includes(key))
        if (unknown !== undefined) {
          diag.count('sdk_bad_arguments')
          // The key is shown only when it looks like a developer's option name, never free text.
          const shown = /^[A-Za-z]{1,32}$/.test(unknown)
            ? ` "${unknown}".${didYouMean(unknown, TRACK_EVENT_OPTIONS)}`
            : '.'
          diag.warn(
            'sdk_bad_arguments.trackEvent.unknown_option',
            `trackEvent() was called with an unknown option${shown} It was ignored; the event was recorded without it (options: ${TRACK_EVENT_OPTIONS.join(', ')}).`,
          )
        }
        const severity: unknown = opts.severity ?? 'low'
        if (!SEVERITIES.includes(severity as Severity))
          return bad('trackEvent', `an unknown severity (use ${SEVERITIES.join(', ')})`)
        if (opts.properties !== undefined && !isRecord(opts.properties)) {
          return bad('trackEvent', '"properties" that are not an object')
        }
        if (opts.identity !== undefined && !isRecord(opts.identity)) {
          return bad('trackEvent', 'an "identity" that is not an object')
        }
        recorder.extra(req, {
          kind: 'custom',
          name,
          severity: severity as Severity,
          properties: opts.properties ? { ...opts.properties } : undefined,
          identity: opts.identity ? copied(opts.identity) : undefined,
          // The request's user, read now: the event counts against whoever is logged in.
          user: opts.identity ? undefined : requestUser(req),
        })
      })
    },
  }
}
