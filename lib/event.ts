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
