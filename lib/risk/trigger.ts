import { checkOptions, SqreenAuthError } from '../errors.js'

/** A resolved "user risk increase" trigger. */
export interface RiskTrigger {
  readonly kind: 'riskIncrease'
  /** Fires when the points added within `withinMs` are strictly greater than this. */
  readonly points: number
  readonly withinMs: number
  /** Higher levels that fire again (an escalation) within the same window. */
  readonly escalate: readonly number[]
}

export interface RiskIncreaseOptions {
  /** Defaults to `10`: "increased by more than 10 points". */
  points?: number
  /** A duration: milliseconds or a string such as `'24h'`, `'90m'`, `'7d'`. Defaults to `'24h'`. */
  within?: number | string
  /** Levels above `points` that alert again within the window. Defaults to none. */
  escalate?: readonly number[]
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `'24h'` -> 86400000; numbers are milliseconds. */
export const parseDuration = (value: number | string, name: string): number => {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value
  const match = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null
  if (!match) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"${name}" must be a positive number of milliseconds or a duration such as "24h", "90m" or "7d", got ${JSON.stringify(value)}.`,
    )
  }
  const ms = Number(match[1]) * (UNITS[match[2] as string] as number)
  if (ms > 0) return ms
  throw new SqreenAuthError(
    'ERR_SQREEN_OPTION_TYPE',
    `"${name}" must be a positive duration, got ${JSON.stringify(value)}.`,
  )
}

/**
 * The Security Hub plugin's trigger: "if the user score has increased by more
 * than 10 points in the last 24h". It fires once when a user crosses it and not
 * again for that user within the window, except at the escalation levels.
 */
export const riskIncrease = (options?: RiskIncreaseOptions): RiskTrigger => {
  checkOptions('riskIncrease()', options, ['points', 'within', 'escalate'])
  options ??= {}
  const points = options.points ?? 10
  if (typeof points !== 'number' || !Number.isFinite(points) || points < 0) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `riskIncrease(): "points" must be a non-negative number, got ${String(points)}.`,
    )
  }
  const levels: unknown = options.escalate
  if (
    levels !== undefined &&
    (levels === null || typeof (levels as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function')
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `riskIncrease(): "escalate" must be an array (or another iterable) of levels, got ${levels === null ? 'null' : typeof levels}.`,
    )
  }
  const escalate = [...(options.escalate ?? [])].sort((a, b) => a - b)
  for (const level of escalate) {
    if (typeof level !== 'number' || !Number.isFinite(level) || level <= points) {
      throw new SqreenAuthError(
        'ERR_SQREEN_OPTION_TYPE',
        `riskIncrease(): every "escalate" level must be a number above "points" (${points}), got ${String(level)}.`,
      )
    }
  }
  return Object.freeze({
    kind: 'riskIncrease',
    points,
    withinMs: parseDuration(options.within ?? '24h', 'riskIncrease().within'),
    escalate: Object.freeze(escalate),
  })
}
