import type { Request } from 'express'
import type { FailureReason, Severity, StrategyAttempt } from '../event.js'

/**
 * What capture hands to the identity boundary: the facts of one login, sign-up
 * or custom event, still holding the personal data (user object, raw login,
 * request) that the boundary turns into an `AuthEvent` and then discards.
 */
export interface RawAttempt {
  readonly kind: 'login' | 'signup' | 'custom'
  readonly source: 'passport' | 'sdk'
  /** Epoch milliseconds. */
  readonly at: number
  /** Only for `identifyLogin(login, req)`; never read past the boundary. */
  readonly req: Request
  readonly ip: string | null
  readonly userAgent: string | null
  readonly status?: number | undefined
  readonly outcome?: 'succeeded' | 'failed' | 'error' | undefined
  readonly strategy?: string | null | undefined
  readonly reason?: FailureReason | undefined
  /** The user object a strategy authenticated, or `req.user` for custom events. */
  readonly user?: unknown
  /** An explicit composite key given to the SDK (`authTrack`, `signupTrack`, `trackEvent`). */
  readonly identity?: Readonly<Record<string, unknown>> | undefined
  /** The attempted login, as typed. */
  readonly login?: string | undefined
  readonly attempts?: readonly StrategyAttempt[] | undefined
  readonly error?: { readonly name: string; readonly code?: string } | undefined
  readonly name?: string | undefined
  readonly severity?: Severity | undefined
  readonly properties?: Readonly<Record<string, unknown>> | undefined
}

export type Submit = (raw: RawAttempt) => void
