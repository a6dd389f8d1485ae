/** The stable codes of `SqreenAuthError` (see the README's error codes table). */
export type SqreenAuthErrorCode =
  | 'ERR_SQREEN_OPTIONS'
  | 'ERR_SQREEN_UNKNOWN_OPTION'
  | 'ERR_SQREEN_OPTION_TYPE'
  | 'ERR_SQREEN_MODE'
  | 'ERR_SQREEN_IDENTIFY_REQUIRED'
  | 'ERR_SQREEN_SECRET'
  | 'ERR_SQREEN_PASSPORT'
  | 'ERR_SQREEN_WATCH'
  | 'ERR_SQREEN_ANON_EMAIL'
  | 'ERR_SQREEN_WEBHOOK_SIGNATURE'
  | 'ERR_SQREEN_EMAIL'
  | 'ERR_SQREEN_URL'
  | 'ERR_SQREEN_FORWARD_KEY'
  | 'ERR_SQREEN_HUB_KEY'
  | 'ERR_SQREEN_HUB_AUTH'
  | 'ERR_SQREEN_HUB_EXPRESS'
  /** Not thrown into the application: the rejection of a Redis store batch while Redis is unreachable. */
  | 'ERR_SQREEN_REDIS_UNAVAILABLE'

/**
 * Every error this package throws is a `SqreenAuthError` with a stable `code`,
 * so applications and tests can branch on the code instead of the wording.
 * Errors are only thrown at setup (bad options) or by pure helpers such as
 * `anonEmail`; nothing on the request path throws into the application.
 */
export class SqreenAuthError extends Error {
  /** Stable across versions: branch on it, not on the message. */
  readonly code: SqreenAuthErrorCode

  constructor(code: SqreenAuthErrorCode, message: string) {
    super(message)
    this.name = 'SqreenAuthError'
    this.code = code
  }
}

const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length] as number
}

/** " Did you mean "x"?" when a close candidate exists, else "". */
export const didYouMean = (given: string, candidates: readonly string[]): string => {
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of candidates) {
    const d = distance(given.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3))
    ? ` Did you mean "${best}"?`
    : ''
}

/**
 * The options object of a public constructor or factory (`riskIncrease()`, `new MemoryStore()`):
 * `undefined` is none, anything but a plain object is refused, and so is an unknown key, with
 * the nearest known one as a hint (a typo must not silently mean "the default").
 */
export const checkOptions = (
  what: string,
  value: unknown,
  known: readonly string[],
): Readonly<Record<string, unknown>> => {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `${what} takes an options object, got ${value === null ? 'null' : typeof value}.`,
    )
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new SqreenAuthError(
        'ERR_SQREEN_UNKNOWN_OPTION',
        `Unknown ${what} option "${key}".${didYouMean(key, known)}`,
      )
    }
  }
  return value as Record<string, unknown>
}
