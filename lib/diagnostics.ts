import type { Logger } from './options.js'

/**
 * Fail-open bookkeeping. Anything that goes wrong at runtime (a throwing
 * `identify`, a listener that rejects, a bad SDK argument) is reported here:
 * it is counted every time and logged only the first time its kind is seen,
 * so a hot failure cannot flood the application's logs.
 *
 * Messages passed here must never contain personal data: callers pass kinds,
 * option names and error class names, never values taken from users.
 */
export interface Diagnostics {
  /** A problem in our code or in a user callback; logged with `logger.error`. */
  error(kind: string, message: string, err?: unknown): void
  /** Bad runtime input; logged with `logger.warn`. */
  warn(kind: string, message: string): void
  /** Count something without logging it (events seen, events dropped, ...). */
  count(name: string, by?: number): void
  /**
   * Logs the next problem of this kind again (its count is kept): for a problem
   * that comes and goes, such as a store outage, so each outage is logged once.
   */
  rearm(kind: string): void
  snapshot(): DiagnosticsSnapshot
}

export interface DiagnosticsSnapshot {
  /** Plain counters: `events`, `dropped`, ... */
  readonly counters: Readonly<Record<string, number>>
  /** How often each kind of error or warning occurred. */
  readonly problems: Readonly<Record<string, number>>
}

const PREFIX = '[sqreen-auth]'

/**
 * Distinct problem kinds kept. Kinds are fixed strings in this package's code, but a kind
 * built from something an application passes through (a property key read from a request)
 * must not grow the map, or the log, without limit: past this many, new kinds are counted
 * together under `OVERFLOW_KIND` and logged once.
 */
const MAX_KINDS = 1_000
export const OVERFLOW_KIND = 'problems_overflow'

/** Only the class name and code of an error are logged: its message may carry user input. */
/** A Redis error reply's first word (NOPERM, WRONGPASS, OOM, READONLY, ...): its code, never user data. */
const REPLY_CODE = /^([A-Z][A-Z_]{1,31})(?:\s|$)/

export const describeError = (err: unknown): string => {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' || typeof code === 'number') return `${err.name} (${code})`
    // A Redis reply (ioredis's ReplyError) has no code property: its message starts with
    // one. Named, a lasting misconfiguration (an ACL, a password, a full server, a
    // replica) is told apart from an outage; the rest of the message is not logged.
    const reply = err.name === 'ReplyError' ? REPLY_CODE.exec(err.message)?.[1] : undefined
    return reply === undefined ? err.name : `${err.name} (${reply})`
  }
  return typeof err
}

export const createDiagnostics = (logger: Logger): Diagnostics => {
  const counters = new Map<string, number>()
  const problems = new Map<string, number>()
  /** Kinds whose next occurrence is logged although they were seen before. */
  const rearmed = new Set<string>()

  const bump = (map: Map<string, number>, key: string, by = 1): number => {
    const next = (map.get(key) ?? 0) + by
    map.set(key, next)
    return next
  }

  const safeLog = (level: 'warn' | 'error', line: string): void => {
    try {
      logger[level](line)
    } catch {
      // A broken logger must not break a login either.
    }
  }

  /** The kind counted: itself, or `OVERFLOW_KIND` once `MAX_KINDS` others are held. */
  const kept = (kind: string): string => (problems.has(kind) || problems.size < MAX_KINDS - 1 ? kind : OVERFLOW_KIND)

  return {
    error(given, message, err) {
      const kind = kept(given)
      if (kind === OVERFLOW_KIND)
        message = `more than ${MAX_KINDS} kinds of problems; further new kinds are counted here`
      if (bump(problems, kind) === 1 || rearmed.delete(kind)) {
        const cause = err === undefined ? '' : `: ${describeError(err)}`
        safeLog('error', `${PREFIX} ${kind}: ${message}${cause} (further "${kind}" problems are counted, not logged)`)
      }
    },
    warn(given, message) {
      const kind = kept(given)
      if (kind === OVERFLOW_KIND)
        message = `more than ${MAX_KINDS} kinds of problems; further new kinds are counted here`
      if (bump(problems, kind) === 1 || rearmed.delete(kind)) {
        safeLog('warn', `${PREFIX} ${kind}: ${message} (further "${kind}" warnings are counted, not logged)`)
      }
    },
    count(name, by = 1) {
      bump(counters, name, by)
    },
    rearm(kind) {
      if (problems.has(kind)) rearmed.add(kind)
    },
    snapshot() {
      return {
        counters: Object.fromEntries(counters),
        problems: Object.fromEntries(problems),
      }
    },
  }
}
