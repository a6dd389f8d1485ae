import type { Severity } from '../event.js'

/** Every detection the engine knows, with its default points (see the README's table). */
export const DEFAULT_POINTS = {
  /** Each `login.failed` for a user (wrong credentials), at most `WRONG_PASSWORD_DAILY_CAP` a day. */
  wrong_password: 1,
  /** >= 5 failures for a user within 15 minutes, from any IP. */
  failure_burst: 4,
  /** 10 consecutive failures for a user from one IP (a success resets the run). */
  brute_force: 15,
  /** >= 20 failures for a user from >= 3 IPs within 24 hours. */
  distributed_guessing: 10,
  /** A failure for the user from an IP flagged as a credential-stuffing source. */
  stuffing_target: 5,
  /** A success from a flagged IP. */
  success_from_flagged_ip: 20,
  /** A success within 24 hours of a brute-force detection against the user. */
  success_after_brute_force: 20,
  /** A success from a user-agent family not seen in the user's last 20 successes. */
  new_device: 2,
  /** The identity's e-mail domain is a throwaway-mail host. */
  disposable_email: 5,
  /** The identity's e-mail domain is a privacy relay. */
  relay_email: 1,
  /** `trackEvent(req, name, { severity })`, by severity. */
  attack_low: 2,
  attack_medium: 5,
  attack_high: 10,
  attack_critical: 20,
} as const

export type Detection = keyof typeof DEFAULT_POINTS

export const DETECTIONS = Object.keys(DEFAULT_POINTS) as Detection[]

export type PointsTable = Readonly<Record<Detection, number>>

export const attackDetection = (severity: Severity): Detection => `attack_${severity}`

/** Fixed thresholds of the detections (documented with the points table). */
export const RULES = {
  WRONG_PASSWORD_DAILY_CAP: 5,
  BURST_FAILURES: 5,
  BURST_WINDOW: 15 * 60_000,
  BRUTE_FORCE_RUN: 10,
  DISTRIBUTED_FAILURES: 20,
  DISTRIBUTED_IPS: 3,
  STUFFING_DISTINCT_LOGINS: 5,
  STUFFING_LOGIN_WINDOW: 10 * 60_000,
  STUFFING_IP_FAILURES: 100,
  DEVICE_MEMORY: 20,
  DAY: 24 * 3_600_000,
  /** How long a user's devices and e-mail-domain marks are remembered. */
  LONG_MEMORY: 90 * 24 * 3_600_000,
} as const
