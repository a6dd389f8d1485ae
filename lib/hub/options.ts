import { KeyObject } from 'node:crypto'
import { didYouMean, SqreenAuthError } from '../errors.js'
import type { EmailOptions } from '../notify/email.js'
import type { FetchLike } from '../notify/http.js'
import {
  checkKeys,
  isObject,
  type Logger,
  type OptionsInput,
  positiveNumber,
  resolveDelivery,
  resolveEmail,
  resolveLogger,
  resolvePoints,
  resolveSlack,
  resolveStore,
  resolveTrigger,
  resolveWebhook,
  SCORING_AND_ALERT_KEYS,
  type ScoringAndAlertOptions,
  secretBytes,
  typeError,
} from '../options.js'
import type { Detection } from '../risk/points.js'
import { parseDuration, type RiskTrigger } from '../risk/trigger.js'
import type { Store } from '../store/store.js'
import { type VerificationKey, verificationKey } from './keys.js'

/** Dashboard and API sign-in with JWTs issued elsewhere (an SSO, a CLI), verified with jose. */
export interface HubJwtOptions {
  /**
   * An HS256 secret (>= 32 bytes) or a public key (Ed25519, RSA, P-256/P-384; KeyObject or
   * PEM). Its type pins the algorithm. Give `key` or `jwksUrl`, not both.
   */
  key?: string | Buffer | KeyObject
  /**
   * Your identity provider's JSON Web Key Set (`https://idp.example/.well-known/jwks.json`),
   * fetched and cached by jose and fetched again for a `kid` it does not hold, so the
   * provider's key rotations need no change here. https only (http for 127.0.0.1 and
   * localhost). Public keys only: HS256 is never accepted from it.
   */
  jwksUrl?: string
  /** With `jwksUrl`: the algorithms accepted. Defaults to `['RS256', 'ES256', 'ES384', 'EdDSA']`. */
  algorithms?: readonly ('RS256' | 'ES256' | 'ES384' | 'EdDSA')[]
  /** Required `iss`. Defaults to none (not checked). */
  issuer?: string
  /** Required `aud`. Defaults to none (not checked). */
  audience?: string
}

export interface HubLimits {
  /** Largest request body (a signed batch), bytes. Defaults to `4_194_304` (4 MiB). */
  body: number
  /** Events per batch. Defaults to `1000`. */
  events: number
  /** Users the dashboard remembers (least recently seen evicted). Defaults to `10000`. */
  users: number
  /** Recent events kept per user for the timeline. Defaults to `50`. */
  eventsPerUser: number
  /** Recent alerts kept. Defaults to `200`. */
  alerts: number
  /** Batch ids remembered against replays (each until its `exp`). Defaults to `100000`. */
  replay: number
  /** Batches scored at once; more get 503 + Retry-After. Defaults to `4`. */
  concurrency: number
  /**
   * Bytes of batch bodies being received and scored at once, across all senders (at least
   * `body`); an upload that would go past it gets 503 + Retry-After before it is read.
   * Defaults to `4 * body` (16 MiB).
   */
  inflight: number
  /**
   * Bytes of JSON of the events waiting out `reorderWindow` (each counted as its share of
   * its batch's body); past it the earliest are scored at once. Defaults to `67_108_864`
   * (64 MiB: about 150 MB of heap for the largest events the schema allows).
   */
  held: number
}

/**
 * Scoring and alerting run centrally with the same options as in `sqreenAuth()`
 * (points table, trigger, half-life, score cap; Slack, e-mail, webhook, `onAlert`,
 * delivery tuning, logger, store, clock): the same types and defaults.
 */
export interface HubOptions extends ScoringAndAlertOptions {
  /**
   * Verifies forwarded batches: the forwarders' shared HS256 secret (>= 32 bytes), or the
   * Ed25519 public key (KeyObject or PEM) of their private `forward.key`. Each key is used
   * with its own algorithm only. Required.
   *
   * To rotate it without losing batches, pass several: `[newKey, oldKey]` (at most 4).
   * Each batch is checked against them in order; a batch that only an
   * older key verifies counts in `hub.batches_older_key`, and once that counter stops
   * rising (every forwarder signs with the new key) the old one can go.
   */
  key: BatchKeyInput | readonly BatchKeyInput[]
  /**
   * Bearer token for the JSON API and the dashboard's sign-in (>= 32 characters). Either
   * `token` or `jwt` is required: the hub has no open default.
   */
  token: string | undefined
  /** Accept JWTs (verified with jose) instead of, or besides, `token`. Defaults to none. */
  jwt: HubJwtOptions | undefined
  /** Where ledgers live. Defaults to a new `MemoryStore()` (closed with the hub). */
  store: Store
  /**
   * Keys IP-level state in the store by HMAC-SHA256 of the address (a key derived from
   * this secret, >= 16 bytes), as `sqreenAuth()` does in advanced mode, so no client
   * address is stored in a key or a window. Defaults to none: IP state is keyed by the
   * address (or IPv6 /56 prefix) itself.
   */
  secret: string | Buffer
  /** Time source for scoring and the views, epoch ms. Defaults to `Date.now`. */
  clock: () => number
  /** Size limits (see `HubLimits`). */
  limits: Partial<HubLimits>
  /** Longest lifetime (`exp - iat`) of a batch, ms or a duration. Defaults to `'5m'`. */
  maxTokenAge: number | string
  /** Clock skew allowed on `iat` / `exp` and on event times, ms or a duration. Defaults to `'30s'`. */
  clockTolerance: number | string
  /** How long a dashboard sign-in lasts, ms or a duration. Defaults to `'12h'`. */
  sessionTtl: number | string
  /**
   * Longest time to receive a batch body, from its headers to its last byte, ms or a
   * duration; a slower upload gets 408 and its connection is closed. Defaults to `'10s'`
   * (the forwarders' own request timeout).
   */
  bodyTimeout: number | string
  /**
   * How long accepted events are held so that events forwarded by several servers are
   * scored in the order they happened, ms or a duration (at most 1 minute); `0` or
   * `false` scores each batch before answering it. Defaults to `'2s'` (twice the
   * forwarders' default flush interval).
   */
  reorderWindow: number | string | false
  /**
   * The path at which browsers reach the hub when a proxy serves it under another path than
   * the one the application mounts it at (nginx's `location /security/ { proxy_pass
   * http://app:3000/hub/; }`: `publicPath: '/security'`). The dashboard's links, redirects
   * and session cookie use it. Defaults to the mount path (`req.baseUrl`).
   */
  publicPath: string
}

/** What `sqreenHub()` takes: `const options: SqreenHubOptions = { ... }`. */
export type SqreenHubOptions = OptionsInput<HubOptions>

/** One batch key as `sqreenHub({ key })` takes it. */
export type BatchKeyInput = string | Buffer | KeyObject

/** Keys a hub accepts at once: the current one and those being retired (see `key`). */
export const MAX_BATCH_KEYS = 4

export interface HubConfig {
  /** The batch keys, the current one first (see `HubOptions['key']`). */
  readonly keys: readonly VerificationKey[]
  readonly token: string | undefined
  readonly jwt:
    | {
        /** A fixed key, or `undefined` with a key set (`jwksUrl`). */
        readonly key: VerificationKey | undefined
        readonly jwksUrl: URL | undefined
        /** The algorithms accepted: the key's one, or those allowed from the key set. */
        readonly algorithms: readonly string[]
        readonly issuer: string | undefined
        readonly audience: string | undefined
      }
    | undefined
  readonly store: Store | undefined
  readonly secret: Buffer | undefined
  readonly points: Readonly<Record<Detection, number>>
  readonly trigger: RiskTrigger | undefined
  readonly halfLifeMs: number
  readonly maxScore: number
  readonly onAlert: HubOptions['onAlert']
  readonly slack: { readonly webhookUrl: string } | undefined
  readonly email: EmailOptions | undefined
  readonly webhook: { readonly url: string; readonly secret: string | Buffer } | undefined
  readonly fetch: FetchLike | undefined
  readonly delivery: ReturnType<typeof resolveDelivery>
  readonly logger: Logger
  readonly clock: () => number
  readonly limits: Readonly<HubLimits>
  readonly maxTokenAgeSeconds: number
  readonly clockToleranceSeconds: number
  readonly sessionTtlMs: number
  readonly bodyTimeoutMs: number
  readonly reorderWindowMs: number
  /** `undefined`: the mount path of each request (`req.baseUrl`). `''` for the root. */
  readonly publicPath: string | undefined
}

const KNOWN_KEYS = [
  'key',
  'secret',
  'token',
  'jwt',
  'limits',
  'maxTokenAge',
  'clockTolerance',
  'sessionTtl',
  'bodyTimeout',
  'reorderWindow',
  'publicPath',
  ...SCORING_AND_ALERT_KEYS,
] as const satisfies readonly (keyof HubOptions)[]

const LIMIT_KEYS = [
  'body',
  'events',
  'users',
  'eventsPerUser',
  'alerts',
  'replay',
  'concurrency',
  'inflight',
  'held',
] as const satisfies readonly (keyof HubLimits)[]

const DEFAULT_LIMITS: Omit<HubLimits, 'inflight'> = {
  body: 4 * 1024 * 1024,
  events: 1000,
  users: 10_000,
  eventsPerUser: 50,
  alerts: 200,
  replay: 100_000,
  concurrency: 4,
  held: 64 * 1024 * 1024,
}

export const MIN_TOKEN_LENGTH = 32

const integer = (name: string, value: unknown, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw typeError(name, 'a positive integer', value)
  return value
}

const duration = (name: string, value: unknown, fallback: number): number =>
  value === undefined ? fallback : parseDuration(value as number | string, name)

const resolveToken = (value: unknown): string | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length < MIN_TOKEN_LENGTH) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      `"token" must be a string of at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -base64 32\`), got ${typeof value === 'string' ? `${value.length} characters` : typeof value}.`,
    )
  }
  return value
}

/** What a key set may sign with: public-key algorithms only. */
const JWKS_ALGORITHMS = ['RS256', 'ES256', 'ES384', 'EdDSA'] as const

const resolveJwksUrl = (value: unknown): URL => {
  let url: URL | undefined
  try {
    url = typeof value === 'string' ? new URL(value) : undefined
  } catch {}
  const loopback = url !== undefined && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)
  if (url === undefined || !(url.protocol === 'https:' || (url.protocol === 'http:' && loopback))) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      `"jwt.jwksUrl" must be an https URL of your identity provider's key set (http only for 127.0.0.1 or localhost): whoever can change the keys on the way can sign in. Got ${JSON.stringify(value) ?? String(value)}.`,
    )
  }
  return url
}

const resolveJwt = (value: unknown): HubConfig['jwt'] => {
  if (value === undefined) return undefined
  if (!isObject(value)) throw typeError('jwt', 'an object { key or jwksUrl, issuer?, audience? }', value)
  checkKeys('jwt', value, ['key', 'jwksUrl', 'algorithms', 'issuer', 'audience'])
  for (const name of ['issuer', 'audience'] as const) {
    if (value[name] !== undefined && typeof value[name] !== 'string')
      throw typeError(`jwt.${name}`, 'a string', value[name])
  }
  if ((value.key === undefined) === (value.jwksUrl === undefined)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      '"jwt" takes a "key" (a secret or public key) or a "jwksUrl" (your identity provider\'s key set), one of the two.',
    )
  }
  const issuer = value.issuer as string | undefined
  const audience = value.audience as string | undefined
  if (value.key !== undefined) {
    if (value.algorithms !== undefined) {
      throw new SqreenAuthError(
        'ERR_SQREEN_HUB_AUTH',
        '"jwt.algorithms" goes with "jwt.jwksUrl": a "key" pins its own algorithm.',
      )
    }
    const key = Object.freeze(
      verificationKey(value.key, 'jwt.key', 'ERR_SQREEN_HUB_AUTH', ['HS256', 'EdDSA', 'RS256', 'ES256', 'ES384']),
    )
    return Object.freeze({ key, jwksUrl: undefined, algorithms: Object.freeze([key.alg]), issuer, audience })
  }
  const algorithms = value.algorithms ?? JWKS_ALGORITHMS
  if (
    !Array.isArray(algorithms) ||
    algorithms.length === 0 ||
    !algorithms.every((a) => (JWKS_ALGORITHMS as readonly unknown[]).includes(a))
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      `"jwt.algorithms" must list some of ${JWKS_ALGORITHMS.join(', ')} (public-key algorithms: a key set never holds a shared secret).`,
    )
  }
  return Object.freeze({
    key: undefined,
    jwksUrl: resolveJwksUrl(value.jwksUrl),
    algorithms: Object.freeze([...(algorithms as string[])]),
    issuer,
    audience,
  })
}

const resolveLimits = (value: unknown): Readonly<HubLimits> => {
  if (value !== undefined && !isObject(value)) throw typeError('limits', 'an object', value)
  const given = (value ?? {}) as Record<string, unknown>
  checkKeys('limits', given, LIMIT_KEYS)
  const limits = { ...DEFAULT_LIMITS, inflight: 0 }
  for (const name of LIMIT_KEYS) {
    if (name !== 'inflight') limits[name] = integer(`limits.${name}`, given[name], DEFAULT_LIMITS[name])
  }
  // One store call claims a batch's event ids (a shared store): a RedisStore batch holds
  // at most 50,000 ops, so a larger batch could never be accepted.
  if (limits.events > MAX_EVENTS_PER_BATCH) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"limits.events" must be at most ${MAX_EVENTS_PER_BATCH} (one store call claims a batch's event ids), got ${limits.events}.`,
    )
  }
  // Scales with `body` unless given: a few full-size batches at once, whatever the batch size.
  limits.inflight = integer('limits.inflight', given.inflight, 4 * limits.body)
  if (limits.inflight < limits.body) {
    // Smaller than one batch, no full-size batch could ever be received.
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"limits.inflight" must be at least "limits.body" (${limits.body} bytes), got ${limits.inflight}.`,
    )
  }
  return Object.freeze(limits)
}

/** Events per batch at most (see `limits.events`). */
const MAX_EVENTS_PER_BATCH = 20_000

/** At most a minute: held events are in memory, and alerts wait for them. */
const MAX_REORDER_WINDOW_MS = 60_000

const resolveReorderWindow = (value: unknown): number => {
  if (value === 0 || value === false) return 0
  const ms = duration('reorderWindow', value, 2_000)
  if (ms > MAX_REORDER_WINDOW_MS) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"reorderWindow" must be at most ${MAX_REORDER_WINDOW_MS} ms (held events wait in memory, and their alerts with them), got ${ms} ms.`,
    )
  }
  return ms
}

/** `key`: one batch key or several (a rotation), each resolved and checked once. */
const resolveBatchKeys = (value: unknown): readonly VerificationKey[] => {
  if (!Array.isArray(value)) {
    return Object.freeze([Object.freeze(verificationKey(value, 'key', 'ERR_SQREEN_HUB_KEY', ['HS256', 'EdDSA']))])
  }
  if (value.length === 0 || value.length > MAX_BATCH_KEYS) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_KEY',
      `"key" as an array holds the batch keys of a rotation, the new one first: 1 to ${MAX_BATCH_KEYS} keys, got ${value.length}.`,
    )
  }
  // A plain loop: `map` skips the holes of a sparse array ([, key]), which must be refused too.
  const keys: VerificationKey[] = []
  for (let i = 0; i < value.length; i++) {
    keys.push(Object.freeze(verificationKey(value[i], `key[${i}]`, 'ERR_SQREEN_HUB_KEY', ['HS256', 'EdDSA'])))
  }
  for (let i = 1; i < keys.length; i++) {
    const material = keyMaterial(keys[i] as VerificationKey)
    const twin = keys.findIndex(
      (other, j) => j < i && other.alg === keys[i]?.alg && keyMaterial(other).equals(material),
    )
    if (twin !== -1) {
      throw new SqreenAuthError('ERR_SQREEN_HUB_KEY', `"key[${i}]" is the same key as "key[${twin}]".`)
    }
  }
  return Object.freeze(keys)
}

/** The bytes of an HS256 secret, or the SPKI of a public key: what makes two keys the same key. */
const keyMaterial = (key: VerificationKey): Buffer =>
  key.key instanceof KeyObject
    ? key.key.type === 'secret'
      ? key.key.export()
      : key.key.export({ type: 'spki', format: 'der' })
    : Buffer.from(key.key)

/**
 * One secret, one purpose. Whoever holds the batch key (every forwarder) could otherwise
 * open the API: with the token as their secret, by sending it; with the JWT key, by
 * minting JWTs (for Ed25519, the forwarders hold the very private key that signs them).
 * The token and an HS256 JWT secret must differ too.
 */
const checkSeparateKeys = (
  key: VerificationKey,
  token: string | undefined,
  jwt: HubConfig['jwt'],
  name = 'key',
): void => {
  const batchKey = keyMaterial(key)
  if (token !== undefined && key.alg === 'HS256' && batchKey.equals(Buffer.from(token, 'utf8'))) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      `"${name}" (the forwarders' batch secret) and "token" (the API and dashboard secret) must differ: every forwarder holds the batch secret. Generate another for each (e.g. \`openssl rand -base64 32\`).`,
    )
  }
  if (jwt?.key !== undefined && jwt.key.alg === key.alg && keyMaterial(jwt.key).equals(batchKey)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      `"${name}" (which verifies forwarded batches) and "jwt.key" (which verifies API and dashboard JWTs) must differ: whoever signs batches could otherwise sign JWTs too.`,
    )
  }
  // A token is sent to the hub (typed into the sign-in form, kept by scripts); were it also
  // the JWT secret, whoever saw it could mint JWTs of any subject and any lifetime.
  if (token !== undefined && jwt?.key !== undefined && jwt.key.alg === 'HS256') {
    if (keyMaterial(jwt.key).equals(Buffer.from(token, 'utf8'))) {
      throw new SqreenAuthError(
        'ERR_SQREEN_HUB_AUTH',
        '"token" and "jwt.key" must differ: whoever holds the token could otherwise sign JWTs of any subject and lifetime. Generate another for each (e.g. `openssl rand -base64 32`).',
      )
    }
  }
}

/**
 * Validates `sqreenHub()`'s options once, with the same rules (and the same
 * messages) as `sqreenAuth()` for what they share. There is no open default:
 * without `token` or `jwt` the hub would serve its data to anyone.
 */
export const resolveHubOptions = (input: unknown): HubConfig => {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTIONS',
      `sqreenHub() takes an options object { key, token }, got ${Array.isArray(input) ? 'an array' : input === null ? 'null' : typeof input}.`,
    )
  }
  const options = input as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
      throw new SqreenAuthError(
        'ERR_SQREEN_UNKNOWN_OPTION',
        `Unknown sqreenHub() option "${key}".${didYouMean(key, KNOWN_KEYS)}`,
      )
    }
  }
  const token = resolveToken(options.token)
  const jwt = resolveJwt(options.jwt)
  if (token === undefined && jwt === undefined) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_AUTH',
      'sqreenHub() needs access control for its API and dashboard: pass "token" (a secret of at least 32 characters, e.g. `openssl rand -base64 32`) or "jwt": { key }.',
    )
  }
  if (options.key === undefined) {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_KEY',
      'sqreenHub() needs "key" to verify forwarded batches: the forwarders\' HS256 secret (at least 32 bytes) or the Ed25519 public key of their forward.key.',
    )
  }
  const fn = <T>(name: string): T | undefined => {
    const value = options[name]
    if (value === undefined) return undefined
    if (typeof value !== 'function') throw typeError(name, 'a function', value)
    return value as T
  }
  const maxTokenAgeMs = duration('maxTokenAge', options.maxTokenAge, 300_000)
  const keys = resolveBatchKeys(options.key)
  for (const [i, key] of keys.entries()) checkSeparateKeys(key, token, jwt, keys.length === 1 ? 'key' : `key[${i}]`)
  return Object.freeze({
    keys,
    token,
    jwt,
    store: resolveStore(options.store),
    secret: options.secret === undefined ? undefined : secretBytes(options.secret, 'secret'),
    points: resolvePoints(options.points),
    trigger: resolveTrigger(options.trigger),
    halfLifeMs: duration('halfLife', options.halfLife, 7 * 86_400_000),
    maxScore: positiveNumber('maxScore', options.maxScore, 100),
    onAlert: fn<HubOptions['onAlert']>('onAlert'),
    slack: resolveSlack(options.slack),
    email: resolveEmail(options.email),
    webhook: resolveWebhook(options.webhook),
    fetch: fn<FetchLike>('fetch'),
    delivery: resolveDelivery(options.delivery),
    logger: resolveLogger(options.logger),
    clock: fn<() => number>('clock') ?? Date.now,
    limits: resolveLimits(options.limits),
    maxTokenAgeSeconds: Math.max(1, Math.round(maxTokenAgeMs / 1000)),
    clockToleranceSeconds: Math.round(duration('clockTolerance', options.clockTolerance, 30_000) / 1000),
    sessionTtlMs: duration('sessionTtl', options.sessionTtl, 12 * 3_600_000),
    bodyTimeoutMs: duration('bodyTimeout', options.bodyTimeout, 10_000),
    reorderWindowMs: resolveReorderWindow(options.reorderWindow),
    publicPath: resolvePublicPath(options.publicPath),
  })
}

/**
 * Segments of an absolute path: unreserved and sub-delimiter characters, `:`, `@` and
 * percent-escapes only (RFC 3986), so the path can be written into a link, a `Location`
 * and a cookie's `Path` as it is; but not `;`, which ends a cookie attribute (Express's
 * `cookie` refuses it, and every sign-in failed with a 500), nor `'`.
 */
const PUBLIC_PATH = /^(?:\/(?:[A-Za-z0-9._~!$&()*+,=:@-]|%[0-9A-Fa-f]{2})+)*$/

const resolvePublicPath = (value: unknown): string | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw typeError('publicPath', "a path such as '/security'", value)
  // '/security/' and '/security' are one place; '/' is the root. Not '' (an empty environment
  // variable): taken as the root, the sign-in form would post the token to the site's /login.
  const path = value.length > 1 && value.endsWith('/') ? value.slice(0, -1) : value === '/' ? '' : value
  if (value === '') {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"publicPath" is empty: give the path browsers reach the hub at, such as '/security' ('/' for the site's root), or leave it out to use the mount path.`,
    )
  }
  const segments = path.split('/').slice(1)
  if (
    path.length > 256 ||
    !PUBLIC_PATH.test(path) ||
    segments.some((s) => s === '.' || s === '..' || /^(?:\.|%2e){1,2}$/i.test(s))
  ) {
    throw new SqreenAuthError(
      'ERR_SQREEN_OPTION_TYPE',
      `"publicPath" must be an absolute path of plain segments, such as '/security' (no '//', '..', query or fragment; 256 characters at most), got ${JSON.stringify(value)}.`,
    )
  }
  return path
}
