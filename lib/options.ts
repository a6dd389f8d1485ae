import { createRequire } from 'node:module'
import type { Request } from 'express'
import { didYouMean, SqreenAuthError } from './errors.js'
import type { AuthEvent, Identity, UserContextMode } from './event.js'
import type { EmailOptions } from './notify/email.js'
import type { FetchLike } from './notify/http.js'
import { isWellFormedWhsec, webhookKey } from './notify/webhook.js'
import type { RiskAlert } from './risk/alert.js'
import { DEFAULT_POINTS, DETECTIONS, type Detection } from './risk/points.js'
import { parseDuration, type RiskTrigger, riskIncrease } from './risk/trigger.js'
import type { Store } from './store/store.js'
import type { ForwardConfig, ForwardOptions } from './transport/forwarder.js'
import { signingKey } from './transport/keys.js'

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
   * In automatic mode it replaces the built-in rule. May be async, but the opt-in `block`
   * check runs on the request path and never waits: it needs a synchronous `identify` to
   * know a user by key. Defaults to none.
   */
  identify: ((user: any) => IdentifyResult | Promise<IdentifyResult>) | undefined
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
  /**
   * Strategy names whose attempts are not logins: an API token checked on every request
   * (passport-jwt, passport-http-bearer, passport-headerapikey). Their attempts make no
   * event, as the `session` strategy's never do. Defaults to `[]`.
   */
  ignoreStrategies: readonly string[]
  /** Called with every `AuthEvent`, after the response has been handed to Express. Defaults to none. */
  onEvent: ((event: AuthEvent) => unknown) | undefined
  /** Where warnings and errors go, each kind logged once. Defaults to `console`. */
  logger: Logger
  /**
   * Events in flight (waiting for the identity boundary, e.g. a slow `identifyLogin`, or for
   * their listeners and store writes to settle) before new ones are dropped and counted.
   * Defaults to `10000`.
   */
  maxPending: number
  /**
   * Score users in this process. Set `false` when a Security Hub scores centrally
   * (events still reach `onEvent` and the forwarder). Defaults to `true`.
   */
  scoring: boolean
  /** Where counters and ledgers live. Defaults to a new in-memory store (one process). */
  store: Store
  /** Override (a number) or switch off (`false` or `0`) the points of any detection. Defaults to the README's table. */
  points: Partial<Record<Detection, number | false>>
  /** When to alert: `riskIncrease({ points, within, escalate })`, or `false` for no alerts. Defaults to `riskIncrease()` (more than 10 points within 24 h). */
  trigger: RiskTrigger | false
  /** Half-life of the standing score, as ms or a duration such as `'7d'`. Defaults to `'7d'`. */
  halfLife: number | string
  /** Cap of the standing score. Defaults to `100`. */
  maxScore: number
  /** Called with every alert, besides Slack / e-mail / webhook. Defaults to none (alerts are logged when no channel is set). */
  onAlert: ((alert: RiskAlert) => unknown) | undefined
  /** A Slack incoming-webhook URL, or `{ webhookUrl }`. Defaults to none. */
  slack: string | { webhookUrl: string } | undefined
  /** E-mail alerts through nodemailer: `{ transport, from, to }`. Defaults to none. */
  email: EmailOptions | undefined
  /** A signed POST per alert (Standard Webhooks): `{ url, secret }`. Defaults to none. */
  webhook: { url: string; secret: string | Buffer } | undefined
  /** The fetch used for Slack, webhooks and forwarding to a hub. Defaults to node-fetch. */
  fetch: FetchLike | undefined
  /**
   * Delivery tuning (ms): per-attempt `timeout`, `retries` after the first try, backoff
   * `baseDelay` / `maxDelay`, `maxQueued` deliveries, and how long `close()` waits for
   * them (`closeTimeout`). Defaults to `{ timeout: 5000, retries: 4, baseDelay: 1000,
   * maxDelay: 60000, maxQueued: 1000, closeTimeout: 5000 }`.
   */
  delivery: Partial<{
    timeout: number
    retries: number
    baseDelay: number
    maxDelay: number
    maxQueued: number
    closeTimeout: number
  }>
  /**
   * Opt-in enforcement: refuse logins (`scope: 'login'`, the default) or all requests (`'all'`)
   * of users whose standing score is above `above`. With `'all'`, `skip(req)` names requests a
   * blocked user may still make (your logout route: `skip: (req) => req.path === '/logout'`).
   * Defaults to `false` (monitoring only).
   */
  block: false | { above: number; scope?: 'login' | 'all'; skip?: (req: Request) => boolean }
  /** The time source, in epoch ms (freeze it in tests). Defaults to `Date.now`. */
  clock: () => number
  /**
   * Forward every event to a Security Hub (`sqreenHub()`) in signed batches:
   * `{ url, key }` plus tuning (see `ForwardOptions`). Combine with `scoring: false`
   * to score only at the hub. Defaults to none.
   */
  forward: OptionsInput<ForwardOptions> | undefined
}

/**
 * What the option functions and constructors take: every field optional, and `undefined`
 * as good as absent (so `process.env.X` can be passed as it is under
 * `exactOptionalPropertyTypes`; what is missing but required is refused at setup with a
 * clear error).
 */
export type OptionsInput<T> = { [K in keyof T]?: T[K] | undefined }

/** What `sqreenAuth()` takes: `const options: SqreenAuthOptions = { ... }`. */
export type SqreenAuthOptions = OptionsInput<Options>

/** The resolved, frozen configuration the stages share. */
export interface Config {
  readonly passport: ObservedPassport
  readonly mode: UserContextMode
  readonly identify: Options['identify']
  readonly identifyLogin: Options['identifyLogin']
  readonly secret: Buffer | undefined
  readonly login: Options['login']
  readonly ignoreStrategies: ReadonlySet<string>
  readonly onEvent: Options['onEvent']
  readonly logger: Logger
  readonly maxPending: number
  readonly scoring: boolean
  readonly store: Store | undefined
  readonly points: Readonly<Record<Detection, number>>
  readonly trigger: RiskTrigger | undefined
  readonly halfLifeMs: number
  readonly maxScore: number
  readonly onAlert: Options['onAlert']
  readonly slack: { readonly webhookUrl: string } | undefined
  readonly email: EmailOptions | undefined
  readonly webhook: { readonly url: string; readonly secret: string | Buffer } | undefined
  readonly fetch: FetchLike | undefined
  readonly delivery: {
    readonly timeoutMs: number
    readonly retries: number
    readonly baseDelayMs: number
    readonly maxDelayMs: number
    readonly maxQueued: number
    readonly closeTimeoutMs: number
  }
  readonly block:
    | {
        readonly above: number
        readonly scope: 'login' | 'all'
        readonly skip: ((req: Request) => boolean) | undefined
      }
    | undefined
  readonly clock: () => number
  readonly forward: ForwardConfig | undefined
}

/**
 * The options that also configure a Security Hub's central scoring and alerts
 * (`sqreenHub()` takes them with the same types and defaults).
 */
export const SCORING_AND_ALERT_KEYS = [
  'store',
  'points',
  'trigger',
  'halfLife',
  'maxScore',
  'onAlert',
  'slack',
  'email',
  'webhook',
  'fetch',
  'delivery',
  'logger',
  'clock',
] as const satisfies readonly (keyof Options)[]

export type ScoringAndAlertOptions = Pick<Options, (typeof SCORING_AND_ALERT_KEYS)[number]>

const KNOWN_KEYS = [
  'passport',
  'mode',
  'identify',
  'identifyLogin',
  'secret',
  'login',
  'ignoreStrategies',
  'onEvent',
  'maxPending',
  'scoring',
  'block',
  'forward',
  ...SCORING_AND_ALERT_KEYS,
] as const satisfies readonly (keyof Options)[]

const MIN_SECRET_BYTES = 16

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
  return secretBytes(raw, 'secret')
}

/**
 * A keying secret given as a string (its UTF-8 bytes) or a Buffer (copied: a later change
 * to the caller's does not change the key), at least 16 bytes. Shared with `sqreenHub()`.
 */
export const secretBytes = (raw: unknown, name: string): Buffer => {
  let bytes: Buffer
  if (typeof raw === 'string') bytes = Buffer.from(raw, 'utf8')
  else if (Buffer.isBuffer(raw)) bytes = Buffer.from(raw)
  else throw typeError(name, 'a string or a Buffer', raw)
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new SqreenAuthError(
      'ERR_SQREEN_SECRET',
      `"${name}" must be at least ${MIN_SECRET_BYTES} bytes long, got ${bytes.length}; generate one with \`openssl rand -base64 32\`.`,
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

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)

const positiveNumber = (name: string, value: unknown, fallback: number, allowZero = false): number => {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw typeError(name, allowZero ? 'a number >= 0' : 'a positive number', value)
  }
  return value
}

/** A count (retries, a queue's length) is a whole number: 1.5 retries would silently mean 2. */
const wholeNumber = (name: string, value: number): number => {
  if (!Number.isInteger(value)) throw typeError(name, 'a whole number', value)
  return value
}

const httpUrl = (name: string, value: unknown): string => {
  let url: URL | undefined
  try {
    url = typeof value === 'string' ? new URL(value) : undefined
  } catch {
    url = undefined
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new SqreenAuthError('ERR_SQREEN_URL', `"${name}" must be an http(s) URL, got ${JSON.stringify(value)}.`)
  }
  return url.href
}

const checkKeys = (name: string, value: Record<string, unknown>, known: readonly string[]): void => {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new SqreenAuthError(
        'ERR_SQREEN_UNKNOWN_OPTION',
        `Unknown option "${name}.${key}".${didYouMean(key, known)}`,
      )
    }
  }
}

const resolveBoolean = (name: string, value: unknown, fallback: boolean): boolean => {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw typeError(name, 'true or false', value)
  return value
}

const resolveStore = (value: unknown): Store | undefined => {
  if (value === undefined) return undefined
  const s = value as Partial<Store> | null
  if (!isObject(s) || typeof s.run !== 'function' || typeof s.close !== 'function') {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      '"store" must implement the Store contract (run and close), e.g. new MemoryStore() or new RedisStore(...).',
    )
  }
  return s as Store
}

const resolvePoints = (value: unknown): Readonly<Record<Detection, number>> => {
  const table: Record<string, number> = { ...DEFAULT_POINTS }
  const defaults = DETECTIONS
  if (value !== undefined && !isObject(value))
    throw typeError('points', 'an object such as { brute_force: 20, new_device: false }', value)
  const given = (value ?? {}) as Record<string, unknown>
  checkKeys('points', given, defaults)
  for (const detection of defaults) {
    const override = given[detection]
    if (override === undefined) continue
    if (override === false) table[detection] = 0
    else table[detection] = positiveNumber(`points.${detection}`, override, 0, true)
  }
  return Object.freeze(table) as Readonly<Record<Detection, number>>
}

const resolveTrigger = (value: unknown): RiskTrigger | undefined => {
  if (value === false) return undefined
  if (value === undefined) return riskIncrease()
  const expected = 'the result of riskIncrease({ points, within, escalate }) or false'
  if (!isObject(value) || value.kind !== 'riskIncrease') throw typeError('trigger', expected, value)
  // Hand-made look-alikes are checked as riskIncrease() would have made them.
  const { points, withinMs, escalate } = value
  const finite = (n: unknown): boolean => typeof n === 'number' && Number.isFinite(n) && n >= 0
  if (
    !finite(points) ||
    !finite(withinMs) ||
    (withinMs as number) <= 0 ||
    !Array.isArray(escalate) ||
    !escalate.every(finite)
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"trigger" must be ${expected}: an object with kind "riskIncrease" but without its points, withinMs and escalate was given.`,
    )
  }
  return value as unknown as RiskTrigger
}

/** A list of strategy names: non-empty strings. */
const resolveStrategyNames = (name: string, value: unknown): ReadonlySet<string> => {
  if (value === undefined) return new Set()
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"${name}" must be an array of strategy names (the names given to passport.use), e.g. ["jwt"].`,
    )
  }
  return new Set(value as string[])
}

const resolveSlack = (value: unknown): Config['slack'] => {
  if (value === undefined) return undefined
  if (typeof value === 'string') return Object.freeze({ webhookUrl: httpUrl('slack', value) })
  if (!isObject(value)) throw typeError('slack', 'an incoming-webhook URL or { webhookUrl }', value)
  checkKeys('slack', value, ['webhookUrl'])
  return Object.freeze({ webhookUrl: httpUrl('slack.webhookUrl', value.webhookUrl) })
}

const resolveEmail = (value: unknown): EmailOptions | undefined => {
  if (value === undefined) return undefined
  if (!isObject(value)) throw typeError('email', 'an object { transport, from, to }', value)
  checkKeys('email', value, ['transport', 'from', 'to', 'subjectPrefix'])
  const { transport, from, to, subjectPrefix } = value
  if (transport === undefined || (typeof transport !== 'string' && !isObject(transport))) {
    throw new SqreenAuthError(
      'ERR_SQREEN_EMAIL',
      '"email.transport" must be an SMTP URL (smtp://user:pass@host:587), nodemailer SMTP options or a nodemailer transport.',
    )
  }
  const recipients = typeof to === 'string' ? [to] : Array.isArray(to) ? to : []
  if (
    typeof from !== 'string' ||
    !from.includes('@') ||
    recipients.length === 0 ||
    !recipients.every((r) => typeof r === 'string' && r.includes('@'))
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_EMAIL',
      '"email.from" and "email.to" must be e-mail addresses (to may be a list).',
    )
  }
  if (subjectPrefix !== undefined && typeof subjectPrefix !== 'string')
    throw typeError('email.subjectPrefix', 'a string', subjectPrefix)
  // The recipients are copied: a later change to the caller's list does not change who is told.
  return Object.freeze({
    ...(value as unknown as EmailOptions),
    to: typeof to === 'string' ? to : Object.freeze([...(to as string[])]),
  })
}

const resolveWebhook = (value: unknown): Config['webhook'] => {
  if (value === undefined) return undefined
  if (!isObject(value)) throw typeError('webhook', 'an object { url, secret }', value)
  checkKeys('webhook', value, ['url', 'secret'])
  const secret = value.secret
  // A "whsec_" key that is not standard, padded base64 would sign with what Node's lenient
  // decoder makes of it, and receivers using the Standard Webhooks libraries refuse it.
  if (typeof secret === 'string' && !isWellFormedWhsec(secret)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_SECRET',
      '"webhook.secret" starts with "whsec_" but what follows is not standard base64 (A-Z, a-z, 0-9, "+", "/", padded with "="): the Standard Webhooks libraries would refuse it. Generate one with `echo "whsec_$(openssl rand -base64 32)"`.',
    )
  }
  // The key itself: a "whsec_..." secret is base64, and what it decodes to is what signs.
  const bytes = typeof secret === 'string' || Buffer.isBuffer(secret) ? webhookKey(secret).length : 0
  if (bytes < MIN_SECRET_BYTES) {
    throw new SqreenAuthError(
      'ERR_SQREEN_SECRET',
      `"webhook.secret" must be a string or Buffer of at least ${MIN_SECRET_BYTES} bytes (a Standard Webhooks "whsec_..." secret works when its base64 decodes to that many); receivers check it with verifyWebhook().`,
    )
  }
  // A Buffer is copied, as \`secret\` is: a later change to the caller's does not change the key.
  return Object.freeze({
    url: httpUrl('webhook.url', value.url),
    secret: Buffer.isBuffer(secret) ? Buffer.from(secret) : (secret as string),
  })
}

const resolveDelivery = (value: unknown): Config['delivery'] => {
  if (value !== undefined && !isObject(value)) throw typeError('delivery', 'an object', value)
  const d = (value ?? {}) as Record<string, unknown>
  checkKeys('delivery', d, ['timeout', 'retries', 'baseDelay', 'maxDelay', 'maxQueued', 'closeTimeout'])
  return Object.freeze({
    timeoutMs: positiveNumber('delivery.timeout', d.timeout, 5_000),
    retries: wholeNumber('delivery.retries', positiveNumber('delivery.retries', d.retries, 4, true)),
    baseDelayMs: positiveNumber('delivery.baseDelay', d.baseDelay, 1_000, true),
    maxDelayMs: positiveNumber('delivery.maxDelay', d.maxDelay, 60_000, true),
    maxQueued: wholeNumber('delivery.maxQueued', positiveNumber('delivery.maxQueued', d.maxQueued, 1_000)),
    closeTimeoutMs: positiveNumber('delivery.closeTimeout', d.closeTimeout, 5_000, true),
  })
}

const resolveBlock = (value: unknown): Config['block'] => {
  if (value === undefined || value === false) return undefined
  if (!isObject(value)) throw typeError('block', 'false or { above, scope }', value)
  checkKeys('block', value, ['above', 'scope', 'skip'])
  const scope = value.scope ?? 'login'
  if (scope !== 'login' && scope !== 'all') {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"block.scope" must be "login" or "all", got ${JSON.stringify(scope)}.${didYouMean(String(scope), ['login', 'all'])}`,
    )
  }
  if (value.above === undefined)
    throw typeError('block.above', 'a number (the standing score above which users are refused)', undefined)
  const skip = value.skip
  if (skip !== undefined && typeof skip !== 'function') {
    throw typeError('block.skip', "a function (req) => boolean, such as (req) => req.path === '/logout'", skip)
  }
  if (skip !== undefined && scope !== 'all') {
    // Logins are never skipped: a skipped login would be a way around the block.
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      '"block.skip" only applies with scope: \'all\' (it names requests a blocked session may still make, such as logout); logins are always checked.',
    )
  }
  return Object.freeze({
    above: positiveNumber('block.above', value.above, 0, true),
    scope,
    skip: skip as ((req: Request) => boolean) | undefined,
  })
}

const FORWARD_KEYS = [
  'url',
  'key',
  'batchSize',
  'flushInterval',
  'maxQueued',
  'timeout',
  'baseDelay',
  'maxDelay',
  'expiresIn',
  'closeTimeout',
  'flushOnExit',
] as const satisfies readonly (keyof ForwardOptions)[]

const positiveInteger = (name: string, value: unknown, fallback: number, max: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"${name}" must be an integer from 1 to ${max}, got ${typeof value === 'number' ? value : value === null ? 'null' : typeof value}.`,
    )
  }
  return value
}

const duration = (name: string, value: unknown, fallback: number): number =>
  value === undefined ? fallback : parseDuration(value as number | string, name)

/** Node's largest timer delay + 1: `setTimeout` takes a longer one as 1 ms. */
const MAX_TIMER_MS = 2 ** 31

const resolveForward = (value: unknown): ForwardConfig | undefined => {
  if (value === undefined) return undefined
  if (!isObject(value)) throw typeError('forward', 'an object { url, key }', value)
  checkKeys('forward', value, FORWARD_KEYS)
  if (value.key === undefined) {
    throw new SqreenAuthError(
      'ERR_SQREEN_FORWARD_KEY',
      '"forward.key" is required: the hub\'s HS256 secret (at least 32 bytes) or an Ed25519 private key whose public key the hub holds.',
    )
  }
  const batchSize = positiveInteger('forward.batchSize', value.batchSize, 500, 10_000)
  const maxQueued = positiveInteger('forward.maxQueued', value.maxQueued, 10_000, 10_000_000)
  if (maxQueued < batchSize) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"forward.maxQueued" (${maxQueued}) must be at least "forward.batchSize" (${batchSize}).`,
    )
  }
  const expiresInMs = duration('forward.expiresIn', value.expiresIn, 60_000)
  if (expiresInMs < 1_000 || expiresInMs > 3_600_000) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"forward.expiresIn" must be from 1 s to 1 h (the hub refuses batches that live longer than its limit, 5 min by default), got ${expiresInMs} ms.`,
    )
  }
  // Timers: Node clamps a delay of 2^31 ms or more to 1 ms (a timeout that aborts every
  // request at once), and a backoff of 0 retries a dead hub in a tight loop.
  const timerMs = (name: string, ms: number): number => {
    if (ms >= MAX_TIMER_MS) {
      throw new SqreenAuthError(
        'ERR_SQREEN_OPTION_TYPE',
        `"${name}" must be below ${MAX_TIMER_MS} ms (about 24.8 days), got ${ms}.`,
      )
    }
    return ms
  }
  const baseDelayMs = timerMs('forward.baseDelay', positiveNumber('forward.baseDelay', value.baseDelay, 1_000))
  const maxDelayMs = timerMs('forward.maxDelay', positiveNumber('forward.maxDelay', value.maxDelay, 60_000))
  return Object.freeze({
    url: httpUrl('forward.url', value.url),
    key: Object.freeze(signingKey(value.key)),
    batchSize,
    flushIntervalMs: timerMs('forward.flushInterval', duration('forward.flushInterval', value.flushInterval, 1_000)),
    maxQueued,
    timeoutMs: timerMs('forward.timeout', positiveNumber('forward.timeout', value.timeout, 10_000)),
    baseDelayMs,
    maxDelayMs,
    expiresInSeconds: Math.ceil(expiresInMs / 1000),
    closeTimeoutMs: timerMs(
      'forward.closeTimeout',
      positiveNumber('forward.closeTimeout', value.closeTimeout, 5_000, true),
    ),
    flushOnExit: resolveBoolean('forward.flushOnExit', value.flushOnExit, false),
  })
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

  // Only a missing mode is the default: null is a mistake, said as one.
  const mode = options.mode === undefined ? 'automatic' : options.mode
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

  // Only a missing value is the default: null is a mistake, said as one.
  const maxPending = options.maxPending === undefined ? 10_000 : options.maxPending
  if (!Number.isInteger(maxPending) || (maxPending as number) < 1) {
    throw typeError('maxPending', 'a positive integer', maxPending)
  }
  const scoring = resolveBoolean('scoring', options.scoring, true)
  const maxScore = positiveNumber('maxScore', options.maxScore, 100)
  const block = resolveBlock(options.block)
  // Combinations that would be accepted and then never block anyone.
  if (block !== undefined && !scoring) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      '"block" needs scoring in this process ("scoring: false" was given): the block list is the scores this process computes, so nobody would ever be refused. Remove "block" or turn scoring on.',
    )
  }
  if (block !== undefined && block.above >= maxScore) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"block.above" (${block.above}) must be below "maxScore" (${maxScore}): a standing score never exceeds maxScore, so nobody would ever be refused.`,
    )
  }

  return Object.freeze({
    passport: resolvePassport(options.passport),
    mode,
    identify,
    identifyLogin: optionalFunction<Options['identifyLogin']>(options, 'identifyLogin'),
    secret: resolveSecret(options.secret, mode),
    login: optionalFunction<Options['login']>(options, 'login'),
    ignoreStrategies: resolveStrategyNames('ignoreStrategies', options.ignoreStrategies),
    onEvent: optionalFunction<Options['onEvent']>(options, 'onEvent'),
    logger: resolveLogger(options.logger),
    maxPending: maxPending as number,
    scoring,
    store: resolveStore(options.store),
    points: resolvePoints(options.points),
    trigger: resolveTrigger(options.trigger),
    halfLifeMs: options.halfLife === undefined ? 7 * 86_400_000 : parseDuration(options.halfLife, 'halfLife'),
    maxScore,
    onAlert: optionalFunction<Options['onAlert']>(options, 'onAlert'),
    slack: resolveSlack(options.slack),
    email: resolveEmail(options.email),
    webhook: resolveWebhook(options.webhook),
    fetch: optionalFunction<FetchLike>(options, 'fetch'),
    delivery: resolveDelivery(options.delivery),
    block,
    clock: optionalFunction<() => number>(options, 'clock') ?? Date.now,
    forward: resolveForward(options.forward),
  })
}

export type { Identity }
// The Security Hub (lib/hub/options.ts) scores and alerts like the middleware and
// validates those options with the same rules and messages.
export {
  checkKeys,
  httpUrl,
  isObject,
  positiveNumber,
  resolveBoolean,
  resolveDelivery,
  resolveEmail,
  resolveLogger,
  resolvePoints,
  resolveSlack,
  resolveStore,
  resolveTrigger,
  resolveWebhook,
  typeError,
}
