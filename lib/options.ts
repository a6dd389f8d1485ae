import { createRequire } from 'node:module'
import type { Request } from 'express'
import { SqreenAuthError } from './errors.js'
import type { AuthEvent, Identity, UserContextMode } from './event.js'

/** What the package needs of a logger; `console` fits. */
export interface Logger {
  warn(message: string): void
  error(message: string): void
  info?(message: string): void
  debug?(message: string): void
}

/**
 * The parts of a Passport `Authenticator` that are observed. `_strategy` is
 * Passport's own (undocumented in @types/passport, hence optional here) and is
 * checked at setup.
 */
export interface PassportLike {
  authenticate(...args: any[]): unknown
  _strategy?(name: string): unknown
}

/** A checked `PassportLike`. */
export interface ObservedPassport {
  authenticate(...args: unknown[]): unknown
  _strategy(name: string): unknown
}

/** What `identify` and `identifyLogin` may return; `undefined` means "unknown user". */
export type IdentifyResult = Record<string, unknown> | undefined | null

export interface Options {
  /** The Passport `Authenticator` to observe. Defaults to the `passport` singleton (`import passport from 'passport'`). */
  passport: PassportLike
  /**
   * `'automatic'`: users are identified from their user object (`id`/`_id`, `email`, `username`).
   * `'advanced'`: only what `identify` returns crosses the identity boundary. Defaults to `'automatic'`.
   */
  mode: UserContextMode
  /**
   * Maps a user object to a flat composite key. Required in advanced mode, where its output is
   * checked: no plain e-mail addresses (use `anonEmail`), no volatile keys (ip, time, session...).
   * In automatic mode it replaces the built-in rule. Defaults to none.
   */
  identify: ((user: any) => IdentifyResult) | undefined
  /**
   * Maps an attempted login (failed logins have no user object) to its user's identity,
   * e.g. by looking the account up. May be async. Defaults to none: the login is keyed by
   * HMAC-SHA256 with `secret` in advanced mode, forwarded as found in automatic mode.
   */
  identifyLogin: ((login: string, req: Request) => IdentifyResult | Promise<IdentifyResult>) | undefined
  /**
   * Key for pseudonymous login hashes (HMAC-SHA256), at least 16 bytes. Required in advanced
   * mode. Defaults to `process.env.SQREEN_AUTH_SECRET`.
   */
  secret: string | Buffer | undefined
  /**
   * Reads the attempted login of a request for strategies other than passport-local and
   * HTTP Basic/Digest (whose logins are read automatically). Defaults to none.
   */
  login: ((req: Request, strategy: string) => string | undefined | null) | undefined
  /** Called with every `AuthEvent`, after the response has been handed to Express. Defaults to none. */
  onEvent: ((event: AuthEvent) => unknown) | undefined
  /** Where warnings and errors go, each kind logged once. Defaults to `console`. */
  logger: Logger
  /** Attempts waiting for the identity boundary (e.g. a slow `identifyLogin`) before new ones are dropped and counted. Defaults to `10000`. */
  maxPending: number
}

/** The resolved, frozen configuration the stages share. */
export interface Config {
  readonly passport: ObservedPassport
  readonly mode: UserContextMode
  readonly identify: Options['identify']
  readonly identifyLogin: Options['identifyLogin']
  readonly secret: Buffer | undefined
  readonly login: Options['login']
  readonly onEvent: Options['onEvent']
  readonly logger: Logger
  readonly maxPending: number
}

const KNOWN_KEYS = [
  'passport',
  'mode',
  'identify',
  'identifyLogin',
  'secret',
  'login',
  'onEvent',
  'logger',
  'maxPending',
] as const satisfies readonly (keyof Options)[]

const MIN_SECRET_BYTES = 16

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

const typeError = (name: string, expected: string, value: unknown): SqreenAuthError =>
  new SqreenAuthError(
    'ERR_SQREEN_OPTION_TYPE',
    `"${name}" must be ${expected}, got ${value === null ? 'null' : typeof value}.`,
  )

const optionalFunction = <T>(options: Partial<Options>, name: keyof Options): T | undefined => {
  const value = options[name]
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw typeError(name, 'a function', value)
  return value as T
}

const loadPassportSingleton = (): unknown => {
  try {
    // Resolved from this package's location, which npm dedupes with the application's
    // copy because passport is a peer dependency.
    return createRequire(import.meta.url)('passport')
  } catch {
    throw new SqreenAuthError(
      'ERR_SQREEN_PASSPORT',
      'Could not load the "passport" package. Install it (npm install passport) or pass your Authenticator: sqreenAuth({ passport }).',
    )
  }
}

const resolvePassport = (value: unknown): ObservedPassport => {
  const candidate = value === undefined ? loadPassportSingleton() : value
  const p = candidate as Partial<ObservedPassport> | null
  if (
    p === null ||
    typeof p !== 'object' ||
    typeof p.authenticate !== 'function' ||
    typeof p._strategy !== 'function'
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_PASSPORT',
      '"passport" must be a Passport Authenticator (the default export of "passport", or new Passport()), version 0.6 or 0.7.',
    )
  }
  return p as ObservedPassport
}

const resolveSecret = (value: unknown, mode: UserContextMode): Buffer | undefined => {
  const raw = value === undefined ? process.env.SQREEN_AUTH_SECRET : value
  if (raw === undefined || raw === '') {
    if (mode === 'advanced') {
      throw new SqreenAuthError(
        'ERR_SQREEN_SECRET',
        'Advanced user context keys failed logins by HMAC-SHA256 and needs a secret: pass "secret" or set SQREEN_AUTH_SECRET (at least 16 random bytes, e.g. `openssl rand -base64 32`).',
      )
    }
    return undefined
  }
  let bytes: Buffer
  if (typeof raw === 'string') bytes = Buffer.from(raw, 'utf8')
  else if (Buffer.isBuffer(raw)) bytes = Buffer.from(raw)
  else throw typeError('secret', 'a string or a Buffer', raw)
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new SqreenAuthError(
      'ERR_SQREEN_SECRET',
      `"secret" must be at least ${MIN_SECRET_BYTES} bytes long, got ${bytes.length}; generate one with \`openssl rand -base64 32\`.`,
    )
  }
  return bytes
}

const resolveLogger = (value: unknown): Logger => {
  if (value === undefined) return console
  const l = value as Partial<Logger> | null
  if (l === null || typeof l !== 'object' || typeof l.warn !== 'function' || typeof l.error !== 'function') {
    throw new SqreenAuthError('ERR_SQREEN_OPTION_TYPE', '"logger" must have "warn" and "error" methods, like console.')
  }
  return l as Logger
}

/**
 * Validates options once, at setup, and returns a frozen config. Unknown keys are an
 * error (a typo would otherwise silently disable a feature); the caller's object is
 * never mutated.
 */
export const resolveOptions = (input: unknown = {}): Config => {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTIONS',
      `sqreenAuth() takes an options object, got ${Array.isArray(input) ? 'an array' : input === null ? 'null' : typeof input}.`,
    )
  }
  const options = input as Partial<Options>
  for (const key of Object.keys(options)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
      throw new SqreenAuthError('ERR_SQREEN_UNKNOWN_OPTION', `Unknown option "${key}".${didYouMean(key, KNOWN_KEYS)}`)
    }
  }

  const mode = options.mode ?? 'automatic'
  if (mode !== 'automatic' && mode !== 'advanced') {
    throw new SqreenAuthError(
      'ERR_SQREEN_MODE',
      `"mode" must be "automatic" or "advanced", got "${String(mode)}".${didYouMean(String(mode), ['automatic', 'advanced'])}`,
    )
  }

  const identify = optionalFunction<Options['identify']>(options, 'identify')
  if (mode === 'advanced' && identify === undefined) {
    throw new SqreenAuthError(
      'ERR_SQREEN_IDENTIFY_REQUIRED',
      'Advanced user context needs "identify": a function that maps your user object to a key without personal data, e.g. identify: (user) => ({ id: user.id }).',
    )
  }

  const maxPending = options.maxPending ?? 10_000
  if (!Number.isInteger(maxPending) || maxPending < 1) {
    throw typeError('maxPending', 'a positive integer', maxPending)
  }

  return Object.freeze({
    passport: resolvePassport(options.passport),
    mode,
    identify,
    identifyLogin: optionalFunction<Options['identifyLogin']>(options, 'identifyLogin'),
    secret: resolveSecret(options.secret, mode),
    login: optionalFunction<Options['login']>(options, 'login'),
    onEvent: optionalFunction<Options['onEvent']>(options, 'onEvent'),
    logger: resolveLogger(options.logger),
    maxPending,
  })
}

export type { Identity }
