import { isIP } from 'node:net'
import {
  type AuthEvent,
  type AuthEventType,
  eventTime,
  type FailureReason,
  type Severity,
  type StrategyAttempt,
} from '../event.js'

/**
 * Strict validation of forwarded events. A valid signature proves who sent a
 * batch, not that its content is sane (a forwarder can be buggy, old or
 * compromised), so every event is checked field by field: unknown fields,
 * `__proto__` / `constructor` keys, nested objects where flat records belong and
 * oversized strings are refused. Reasons name fields, never values (they are
 * echoed to the sender and counted).
 *
 * An event that passes is the parsed object itself, not a copy: every own key of it
 * and of its nested objects is a known field whose value was checked, and each is a
 * plain object as `JSON.parse` builds them (`Object.prototype`, data properties only),
 * so a copy would hold exactly the same. Not copying matters at the hub's rates: a copy
 * was four more objects per event, all alive while their batch is scored, and what is
 * alive at a young collection is what it costs (bench/README, hub).
 */

export type Checked = { readonly ok: true; readonly event: AuthEvent } | { readonly ok: false; readonly reason: string }

export interface SchemaLimits {
  /** Events dated further in the future than this (ms) are refused (clock skew allowance). */
  readonly futureMs: number
  /** Events older than this (ms) are refused: the engine keeps nothing that old. */
  readonly pastMs: number
}

/**
 * The allowed values of a field, each mapped to itself: validation hands back the hub's own
 * copy of the string. `JSON.parse` gives every event its own copy of every value longer
 * than a few characters, and the hub keeps events (2 s in the reorder window, 50 per user
 * in the views): one shared string per value instead of one per event.
 */
const choices = <T extends string>(values: readonly T[]): ReadonlyMap<string, T> => new Map(values.map((v) => [v, v]))

const TYPES = choices<AuthEventType>(['login.succeeded', 'login.failed', 'login.error', 'signup', 'custom'])
const REASONS = choices<FailureReason>(['invalid_credentials', 'missing_credentials', 'blocked'])
const SEVERITIES = choices<Severity>(['low', 'medium', 'high', 'critical'])
const OUTCOMES = choices<StrategyAttempt['outcome']>(['succeeded', 'failed', 'error', 'redirect', 'pass', 'pending'])
const FIELDS = new Set([
  'id',
  'type',
  'at',
  'source',
  'mode',
  'strategy',
  'reason',
  'identity',
  'userKey',
  'loginKey',
  'ip',
  'userAgent',
  'status',
  'attempts',
  'error',
  'name',
  'severity',
  'properties',
])
const SOURCES = choices<AuthEvent['source']>(['passport', 'sdk'])
const MODES = choices<AuthEvent['mode']>(['automatic', 'advanced'])
const ATTEMPT_FIELDS = new Set(['strategy', 'outcome', 'reason'])
const ERROR_FIELDS = new Set(['name', 'code'])
/** Keys that change an object's prototype or shadow its constructor when copied carelessly. */
const POISON = new Set(['__proto__', 'constructor', 'prototype'])

const MAX_ID = 64
const MAX_SHORT = 128
const MAX_KEY = 512
const MAX_VALUE = 256
const MAX_USER_AGENT = 512
const MAX_IDENTITY_KEYS = 16
const MAX_PROPERTIES = 32
const MAX_ATTEMPTS = 16
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/
const ID = /^[A-Za-z0-9_-]+$/
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/

class Invalid extends Error {}

const invalid = (reason: string): never => {
  throw new Invalid(reason)
}

/** A JSON object (the prototype of what JSON.parse builds), not an array or null. */
const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const str = (value: unknown, field: string, max: number, min = 1): string => {
  if (typeof value !== 'string') return invalid(`${field} must be a string`)
  if (value.length < min || value.length > max) return invalid(`${field} must have ${min} to ${max} characters`)
  return value
}

const nullableStr = (value: unknown, field: string, max: number): string | null =>
  value === null ? null : str(value, field, max)

/** The hub's own copy of an allowed value (see `choices`). */
const oneOf = <T extends string>(value: unknown, field: string, allowed: ReadonlyMap<string, T>): T => {
  const known = typeof value === 'string' ? allowed.get(value) : undefined
  return known === undefined ? invalid(`${field} is not one of the allowed values`) : known
}

/** A flat record of strings and numbers (and booleans when allowed), as identities and properties are. */
const flat = (
  value: unknown,
  field: string,
  maxKeys: number,
  booleans: boolean,
): Record<string, string | number | boolean> => {
  if (!isPlainObject(value)) return invalid(`${field} must be an object`)
  let count = 0
  for (const key in value) {
    if (++count > maxKeys) return invalid(`${field} has more than ${maxKeys} keys`)
    if (key.length === 0 || key.length > 64 || POISON.has(key)) return invalid(`${field} has a forbidden key`)
    const v = value[key]
    if (typeof v === 'string') {
      if (v.length > MAX_VALUE) return invalid(`${field} has a value longer than ${MAX_VALUE} characters`)
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return invalid(`${field} has a non-finite number`)
    } else if (!(booleans && typeof v === 'boolean')) {
      return invalid(`${field} values must be strings${booleans ? ', numbers or booleans' : ' or numbers'}`)
    }
  }
  return value as Record<string, string | number | boolean>
}

const only = (value: Record<string, unknown>, allowed: ReadonlySet<string>, field: string): void => {
  for (const key in value) {
    if (!allowed.has(key)) {
      invalid(FIELD_NAME.test(key) ? `${field}unknown field "${key}"` : `${field}unknown field`)
    }
  }
}

const attempts = (value: unknown): StrategyAttempt[] => {
  if (!Array.isArray(value) || value.length > MAX_ATTEMPTS)
    return invalid(`attempts must be an array of at most ${MAX_ATTEMPTS}`)
  for (let i = 0; i < value.length; i++) {
    const a: unknown = value[i]
    if (!isPlainObject(a)) return invalid('attempts[] must be objects')
    only(a, ATTEMPT_FIELDS, 'attempts[]: ')
    str(a.strategy, 'attempts[].strategy', MAX_SHORT)
    a.outcome = oneOf(a.outcome, 'attempts[].outcome', OUTCOMES)
    if (a.reason !== undefined) a.reason = oneOf(a.reason, 'attempts[].reason', REASONS)
  }
  return value as StrategyAttempt[]
}

const errorInfo = (value: unknown): { name: string; code?: string } => {
  if (!isPlainObject(value)) return invalid('error must be an object')
  only(value, ERROR_FIELDS, 'error: ')
  str(value.name, 'error.name', MAX_SHORT)
  if (value.code !== undefined) str(value.code, 'error.code', MAX_SHORT)
  return value as { name: string; code?: string }
}

const build = (raw: unknown, now: number, limits: SchemaLimits): AuthEvent => {
  if (!isPlainObject(raw)) return invalid('an event must be an object')
  only(raw, FIELDS, '')
  const at = str(raw.at, 'at', 40)
  const time = ISO_TIME.test(at) ? eventTime(at) : Number.NaN
  if (!Number.isFinite(time)) return invalid('at must be an ISO 8601 time')
  if (time > now + limits.futureMs) return invalid('at is in the future')
  if (time < now - limits.pastMs) return invalid('at is too old')
  const id = str(raw.id, 'id', MAX_ID)
  if (!ID.test(id)) return invalid('id must be letters, digits, - or _')
  const type = oneOf(raw.type, 'type', TYPES)
  raw.type = type
  const ip = nullableStr(raw.ip, 'ip', 45)
  if (ip !== null && isIP(ip) === 0) return invalid('ip must be an IPv4 or IPv6 address')
  if (raw.strategy === undefined || raw.userKey === undefined || raw.userAgent === undefined || raw.ip === undefined)
    return invalid('strategy, userKey, ip and userAgent are required (null when unknown)')
  raw.source = oneOf(raw.source, 'source', SOURCES)
  raw.mode = oneOf(raw.mode, 'mode', MODES)
  nullableStr(raw.strategy, 'strategy', MAX_SHORT)
  flat(raw.identity, 'identity', MAX_IDENTITY_KEYS, false)
  nullableStr(raw.userKey, 'userKey', MAX_KEY)
  nullableStr(raw.userAgent, 'userAgent', MAX_USER_AGENT)
  if (raw.reason !== undefined) raw.reason = oneOf(raw.reason, 'reason', REASONS)
  if (raw.loginKey !== undefined) str(raw.loginKey, 'loginKey', MAX_KEY)
  if (raw.status !== undefined) {
    const status = raw.status
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599)
      return invalid('status must be an HTTP status code')
  }
  if (raw.attempts !== undefined) attempts(raw.attempts)
  if (raw.error !== undefined) errorInfo(raw.error)
  if (raw.name !== undefined) str(raw.name, 'name', MAX_SHORT)
  if (raw.severity !== undefined) raw.severity = oneOf(raw.severity, 'severity', SEVERITIES)
  if (raw.properties !== undefined) flat(raw.properties, 'properties', MAX_PROPERTIES, true)
  if (type === 'custom' && raw.name === undefined) return invalid('a custom event needs a name')
  // Every own key is a known field and every field was checked above (see the top).
  return raw as unknown as AuthEvent
}

/**
 * Checks one forwarded event, as `JSON.parse` built it; never throws. The object itself is
 * the event (not a copy), with the hub's own strings written into fields with a fixed set
 * of values (see `choices`): it must be the caller's to change.
 */
export const checkEvent = (raw: unknown, now: number, limits: SchemaLimits): Checked => {
  try {
    return { ok: true, event: build(raw, now, limits) }
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, reason: err.message }
    return { ok: false, reason: 'unreadable event' }
  }
}
