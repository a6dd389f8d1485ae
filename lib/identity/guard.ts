import type { Diagnostics } from '../diagnostics.js'
import type { Identity, UserContextMode } from '../event.js'
import { wellFormed } from '../well-formed.js'
import { isAnonEmail, looksLikeEmail } from './anon-email.js'

const MAX_KEYS = 16
const MAX_VALUE = 256
const KEY = /^[A-Za-z_$][A-Za-z0-9_$.-]{0,63}$/
/**
 * Keys that change an object's prototype or shadow its constructor when copied carelessly:
 * the hub refuses an event holding one (`trackEvent(req, name, { properties: req.query })`
 * with `?constructor=1` lost the event there), so they never leave.
 */
const POISON = new Set(['__proto__', 'constructor', 'prototype'])

/**
 * Words that mark a value as transient: the seed document warns that a
 * timestamp or an IP address in the composite key would make one user look
 * like many. Keys are split into words (camelCase, snake_case, kebab-case) and
 * refused when any *word* is one of these, so `lastLoginIp` is refused while
 * `zip` or `description` are not: whole words, never substrings.
 */
const VOLATILE_WORDS = new Set([
  'timestamp',
  'time',
  'date',
  'datetime',
  'ts',
  'at',
  'now',
  'expires',
  'expiry',
  'exp',
  'iat',
  'nbf',
  'ip',
  'ips',
  'ipv4',
  'ipv6',
  'ip4',
  'ip6',
  'session',
  'sess',
  'sid',
  'token',
  'jwt',
  'nonce',
  'csrf',
  'otp',
  'random',
  'rand',
  'useragent',
  'ua',
])

/**
 * Words that mark a value as a credential: it must never leave the application, as an
 * identity field or a property, in either mode (the password is never read by capture;
 * this keeps the SDK from carrying one either).
 */
const SECRET_WORDS = new Set([
  'password',
  'passwd',
  'pwd',
  'pass',
  'passphrase',
  'passcode',
  'secret',
  'credential',
  'credentials',
  'apikey',
  'pin',
])

export const keyWords = (key: string): string[] =>
  key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '')

// Applications use a handful of identity keys; remember each verdict instead of
// splitting the same key into words on every login.
const verdicts = new Map<string, boolean>()

const secretVerdicts = new Map<string, boolean>()

/** `password`, `userPassword`, `api_key`... (whole words, as for volatile keys; `apiKey` is two words: `api`, `key` counts as `apikey` too). */
export const isSecretKey = (key: string): boolean => {
  let verdict = secretVerdicts.get(key)
  if (verdict === undefined) {
    const words = keyWords(key)
    verdict = words.some((w, i) => SECRET_WORDS.has(w) || (w === 'api' && words[i + 1] === 'key'))
    if (secretVerdicts.size < 1_000) secretVerdicts.set(key, verdict)
  }
  return verdict
}

export const isVolatileKey = (key: string): boolean => {
  let verdict = verdicts.get(key)
  if (verdict === undefined) {
    verdict = keyWords(key).some((w) => VOLATILE_WORDS.has(w))
    if (verdicts.size < 1_000) verdicts.set(key, verdict)
  }
  return verdict
}

export type IdentitySource = 'identify' | 'identifyLogin' | 'authTrack' | 'signupTrack' | 'trackEvent' | 'automatic'

export interface IdentityGuard {
  /** A flat, checked identity; problems are warned about (once per kind) and the offending keys dropped. */
  identity(candidate: unknown, source: IdentitySource): Identity
  /** Flat event properties; in advanced mode e-mail-looking values are dropped. */
  properties(
    candidate: Readonly<Record<string, unknown>> | undefined,
  ): Record<string, string | number | boolean> | undefined
}

/**
 * The identity boundary's checks. In advanced mode this is what makes "no
 * personal data crosses" hold for values the application hands us: e-mail
 * addresses must have the `anon-<id>@<domain>` form. Warnings name the key and
 * the rule, never the value.
 */
export const createIdentityGuard = (mode: UserContextMode, diag: Diagnostics): IdentityGuard => {
  /**
   * Identity keys are the application's own names, a handful: each refused key is its own
   * kind, so each is named once. Property keys may come from request data
   * (`trackEvent(req, name, { properties: req.query })`): one kind per rule there, or the
   * problem counts and the log would grow with every new key (diagnostics caps the kinds
   * too). A key that is not an identifier is never named: it may be anything, an e-mail
   * address included (`{ 'jane@example.com': true }`).
   */
  const refuse = (source: string, rule: string, key: string | undefined, why: string, perKey = true): void => {
    diag.count('identity_refused')
    diag.warn(
      perKey && key !== undefined ? `identity_refused.${source}.${rule}.${key}` : `identity_refused.${source}.${rule}`,
      `${source} returned ${key === undefined ? 'a key that is not an identifier' : `key "${key}"`}, which was dropped: ${why}`,
    )
  }

  const flatValue = (value: unknown): string | number | undefined => {
    if (typeof value === 'number') return Number.isFinite(value) ? value : undefined
    if (typeof value === 'bigint') return value.toString()
    if (typeof value !== 'string') return undefined
    // Well-formed: a lone surrogate is U+FFFD, as a Redis key or a link carries it. Before, the
    // memory store counted `x\ud800`, `x\udc00` and `x\ufffd` as three users, Redis as one.
    const trimmed = wellFormed(value.trim())
    return trimmed === '' || trimmed.length > MAX_VALUE ? undefined : trimmed
  }

  return {
    identity(candidate, source) {
      if (candidate === undefined || candidate === null) return {}
      // A record: an object literal (or one without prototype), not an array, nor an
      // instance of a class. An ORM's user instance returned as it is (`identify: u => u`)
      // has internals among its own fields: a Sequelize instance's constant `uniqno: 1` made
      // every user one identity. Refused whole, not field by field.
      const proto = typeof candidate === 'object' ? Object.getPrototypeOf(candidate) : undefined
      if (typeof candidate !== 'object' || (proto !== Object.prototype && proto !== null)) {
        diag.count('identity_refused')
        diag.warn(
          `identity_invalid.${source}`,
          `${source} must return a plain object of its own, such as { id: String(user.id) } (not an array, nor a class or ORM instance); the value was ignored.`,
        )
        return {}
      }
      const out: Record<string, string | number> = {}
      let kept = 0
      // Object.keys, not Object.entries: one array per identity rather than one per key.
      const record = candidate as Record<string, unknown>
      for (const key of Object.keys(record)) {
        let raw: unknown
        let unreadable = false
        try {
          raw = record[key]
        } catch {
          // A getter that throws: refused below, once the key is known to be nameable.
          unreadable = true
        }
        if (!unreadable && (raw === undefined || raw === null)) continue
        if (!KEY.test(key) || POISON.has(key)) {
          refuse(
            source,
            'key',
            undefined,
            'keys are 1-64 letters, digits, "_", "$", "." or "-", starting with a letter.',
          )
          continue
        }
        if (unreadable) {
          refuse(source, 'type', key, 'reading it threw.')
          continue
        }
        if (isSecretKey(key)) {
          refuse(
            source,
            'secret',
            key,
            'it names a credential (a password, secret or API key), which never leaves the application.',
          )
          continue
        }
        if (isVolatileKey(key)) {
          refuse(
            source,
            'volatile',
            key,
            'it looks volatile (a time, IP, session or token); an identity is a stable composite key.',
          )
          continue
        }
        const value = flatValue(raw)
        if (value === undefined) {
          refuse(
            source,
            'type',
            key,
            `values must be non-empty strings (at most ${MAX_VALUE} characters) or finite numbers.`,
          )
          continue
        }
        if (mode === 'advanced' && typeof value === 'string' && looksLikeEmail(value) && !isAnonEmail(value)) {
          refuse(
            source,
            'email',
            key,
            'advanced user context refuses e-mail addresses; use anonEmail(user.id, user.email).',
          )
          continue
        }
        if (++kept > MAX_KEYS) {
          refuse(source, 'size', key, `an identity has at most ${MAX_KEYS} keys.`)
          continue
        }
        out[key] = value
      }
      return out
    },

    properties(candidate) {
      if (candidate === undefined) return undefined
      const out: Record<string, string | number | boolean> = {}
      for (const [key, raw] of Object.entries(candidate).slice(0, 32)) {
        if (!KEY.test(key) || POISON.has(key)) continue
        if (isSecretKey(key)) {
          refuse(
            'trackEvent.properties',
            'secret',
            key,
            'it names a credential (a password, secret or API key), which never leaves the application.',
            false,
          )
          continue
        }
        if (typeof raw === 'boolean') out[key] = raw
        else {
          const value = flatValue(raw)
          if (value === undefined) continue
          if (mode === 'advanced' && typeof value === 'string' && looksLikeEmail(value) && !isAnonEmail(value)) {
            refuse('trackEvent.properties', 'email', key, 'advanced user context refuses e-mail addresses.', false)
            continue
          }
          out[key] = value
        }
      }
      return out
    },
  }
}
