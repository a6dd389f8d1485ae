/**
 * The contract between stages. Everything after the identity boundary (the
 * listeners, and later the risk engine, stores, notifications and the hub)
 * takes an `AuthEvent` and nothing else, so in advanced mode "no personal data
 * leaves" holds by construction: no later stage ever sees a user object, a
 * raw login or a request.
 */

/** A flat composite key: all fields together identify one user. */
export type Identity = Readonly<Record<string, string | number>>

export type AuthEventType = 'login.succeeded' | 'login.failed' | 'login.error' | 'signup' | 'custom'

/** `blocked`: the credentials were right but opt-in enforcement refused the login. */
export type FailureReason = 'invalid_credentials' | 'missing_credentials' | 'blocked'

export type Severity = 'low' | 'medium' | 'high' | 'critical'

export type UserContextMode = 'automatic' | 'advanced'

/** One strategy's part in a login; a chain `authenticate(['a', 'b'])` has several. */
export interface StrategyAttempt {
  readonly strategy: string
  readonly outcome: 'succeeded' | 'failed' | 'error' | 'redirect' | 'pass' | 'pending'
  readonly reason?: FailureReason
}

export interface AuthEvent {
  /** Unique id of this event (a UUID), for de-duplication downstream. */
  readonly id: string
  readonly type: AuthEventType
  /** ISO 8601 time at which the outcome was observed. */
  readonly at: string
  /** `passport` when captured automatically, `sdk` for `authTrack` / `signupTrack` / `trackEvent`. */
  readonly source: 'passport' | 'sdk'
  readonly mode: UserContextMode
  /** Strategy name that decided the outcome; `null` for SDK events. */
  readonly strategy: string | null
  /** For `login.failed` only. */
  readonly reason?: FailureReason
  /** The user's composite key after the identity boundary (empty when nobody is known). */
  readonly identity: Identity
  /** Stable key of the user's risk ledger: `id:<id>` when the identity has an `id`, else the whole composite key. `null` when nobody is known. */
  readonly userKey: string | null
  /**
   * Key of the login that was attempted (plain in automatic mode, a keyed hash
   * in advanced mode). On a success it links earlier failures for that login
   * to the user.
   */
  readonly loginKey?: string
  /** Express's `req.ip` (honours the app's `trust proxy`). */
  readonly ip: string | null
  readonly userAgent: string | null
  /** HTTP status the application answered with, when known. */
  readonly status?: number
  /** Every strategy tried for this request, in order. */
  readonly attempts?: readonly StrategyAttempt[]
  /** For `login.error`: class name and code of the error, never its message. */
  readonly error?: { readonly name: string; readonly code?: string }
  /** For `custom` events (`trackEvent`). */
  readonly name?: string
  readonly severity?: Severity
  readonly properties?: Readonly<Record<string, string | number | boolean>>
}

/** Whether an identity (or any record) has a field of its own: `Object.keys(o).length > 0` without the array. */
export const hasFields = (o: object): boolean => {
  for (const key in o) if (Object.hasOwn(o, key)) return true
  return false
}

/** Where `toISOString()` writes digits: `YYYY-MM-DDTHH:MM:SS.sssZ`. */
const ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]

/** The number written by `length` digits of `s` from `i` (the caller checked they are digits). */
const num = (s: string, i: number, length: number): number => {
  let n = 0
  for (let k = i; k < i + length; k++) n = n * 10 + s.charCodeAt(k) - 48
  return n
}

/**
 * Epoch milliseconds of an event's `at`, `NaN` when it is no time. Events carry the
 * form `toISOString()` writes (`2026-12-03T18:32:03.123Z`); that form is read by
 * position, several times faster than `Date.parse`, which the engine and the hub
 * would otherwise run on every event. Anything else (another offset, fewer digits,
 * a day past the 28th, which `Date.parse` judges by the month, a year before 1000)
 * goes to `Date.parse`.
 */
export const eventTime = (at: string): number => {
  // The hub reads each event's time three times (the schema check, its views, the risk
  // engine), each time from the same string: the last answer is kept. A pure function
  // of the text, so equal text from another string gives the same answer.
  if (at === lastText) return lastTime
  const time = parseEventTime(at)
  lastText = at
  lastTime = time
  return time
}

let lastText: string | undefined
let lastTime = Number.NaN

const parseEventTime = (at: string): number => {
  if (
    at.length !== 24 ||
    at.charCodeAt(4) !== 45 ||
    at.charCodeAt(7) !== 45 ||
    at.charCodeAt(10) !== 84 ||
    at.charCodeAt(13) !== 58 ||
    at.charCodeAt(16) !== 58 ||
    at.charCodeAt(19) !== 46 ||
    at.charCodeAt(23) !== 90
  ) {
    return Date.parse(at)
  }
  for (const i of ISO_DIGITS) {
    const c = at.charCodeAt(i)
    if (c < 48 || c > 57) return Date.parse(at)
  }
  const year = num(at, 0, 4)
  const month = num(at, 5, 2)
  const day = num(at, 8, 2)
  const hour = num(at, 11, 2)
  const minute = num(at, 14, 2)
  const second = num(at, 17, 2)
  if (year < 1000 || month < 1 || month > 12 || day < 1 || day > 28 || hour > 23 || minute > 59 || second > 59) {
    return Date.parse(at)
  }
  return Date.UTC(year, month - 1, day, hour, minute, second) + num(at, 20, 3)
}
