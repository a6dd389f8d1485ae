import type { Identity } from '../event.js'

/** One detection that contributed to an alert, as shown to people and receivers. */
export interface AlertDetection {
  readonly detection: string
  readonly points: number
  /** ISO 8601. */
  readonly at: string
  readonly evidence?: Readonly<Record<string, string | number>>
}

/**
 * What the "user risk increase" trigger emits. Built from `AuthEvent`s and ledger
 * entries only, so in advanced mode it carries no personal data: the identity is
 * the checked output of `identify`, IPs are truncated (/24, /56).
 */
export interface RiskAlert {
  readonly type: 'user.risk.increased'
  /** Unique id; webhook deliveries reuse it as `webhook-id` on retries. */
  readonly id: string
  /** ISO 8601. */
  readonly at: string
  readonly userKey: string
  readonly identity: Identity
  /** The threshold crossed: the trigger's `points`, or an escalation level. */
  readonly level: number
  readonly escalation: boolean
  /** Points added within the window (what crossed the threshold). */
  readonly rise: number
  readonly windowMs: number
  /** The user's standing (decayed) score. */
  readonly score: number
  /** The entries within the window, oldest first. */
  readonly detections: readonly AlertDetection[]
  /** The truncated IP of the event that crossed the threshold, when known. */
  readonly ip?: string
  /**
   * Set when the user's ledger could not be read after the crossing (a store blip): `rise`
   * is still exact, but `detections` and `score` cover only the entries of the event that
   * crossed. The alert is sent rather than lost, since the crossing's mark is already set.
   */
  readonly partial?: true
  /**
   * Set when the event was a success right after a brute force (`success_after_brute_force`
   * added): the account is probably compromised. Such an alert is sent even when the
   * window's alert was already sent (for the brute force, typically).
   */
  readonly takeover?: true
}
