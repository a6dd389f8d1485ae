import { createHmac, timingSafeEqual } from 'node:crypto'
import { SqreenAuthError } from '../errors.js'
import type { RiskAlert } from '../risk/alert.js'
import { classifyStatus, type FetchLike, postJson, type SendResult } from './http.js'
import type { Channel } from './queue.js'

/** Standard base64, padded: what a `whsec_` secret holds (Node's decoder would also take base64url, or skip junk). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** Whether a `whsec_` secret's key is well-formed base64 (as the Standard Webhooks libraries decode it). */
export const isWellFormedWhsec = (secret: string): boolean =>
  !secret.startsWith('whsec_') || BASE64.test(secret.slice('whsec_'.length))

/**
 * Standard Webhooks secrets are `whsec_<base64 key>`; any other string is used
 * as UTF-8 bytes, so a plain shared secret works too (a receiver using the
 * official `standardwebhooks` library then passes it with `{ format: 'raw' }`).
 */
export const webhookKey = (secret: string | Buffer): Buffer => {
  if (Buffer.isBuffer(secret)) return secret
  return secret.startsWith('whsec_')
    ? Buffer.from(secret.slice('whsec_'.length), 'base64')
    : Buffer.from(secret, 'utf8')
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, the Standard Webhooks signature. */
export const signWebhook = (id: string, timestamp: number, body: string, secret: string | Buffer): string =>
  `v1,${createHmac('sha256', webhookKey(secret)).update(`${id}.${timestamp}.${body}`).digest('base64')}`

/**
 * A header by its lower-case name, from a `Headers` (`get`) or a plain object, whose keys
 * Node lower-cases but other frameworks and hand-built objects may not: names are
 * case-insensitive (RFC 9110), so `Webhook-Id` is found too.
 */
const header = (headers: unknown, name: string): string | undefined => {
  if (headers !== null && typeof headers === 'object' && typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(n: string): string | null }).get(name) ?? undefined
  }
  if (headers === null || typeof headers !== 'object') return undefined
  const record = headers as Record<string, unknown>
  let value = record[name]
  if (value === undefined) {
    for (const key of Object.keys(record)) {
      if (key.toLowerCase() === name) {
        value = record[key]
        break
      }
    }
  }
  return Array.isArray(value) ? String(value[0]) : typeof value === 'string' ? value : undefined
}

export interface VerifyWebhookOptions {
  /** How far the timestamp may be from now, in seconds. Defaults to `300`. */
  toleranceSeconds?: number
  /** For tests. Defaults to `Date.now`. */
  now?: () => number
}

/**
 * For receivers: checks the Standard Webhooks headers (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature`) against the raw body and returns the
 * parsed alert. Throws `SqreenAuthError` `ERR_SQREEN_WEBHOOK_SIGNATURE` when the
 * signature does not match or the timestamp is outside the tolerance (replays).
 * Pass the raw body (e.g. `express.raw({ type: 'application/json' })`), not a
 * re-serialised object.
 */
export const verifyWebhook = (
  headers: unknown,
  body: string | Buffer,
  // `undefined` is taken (process.env.WEBHOOK_SECRET as it is) and refused at run time: ERR_SQREEN_SECRET.
  secret: string | Buffer | undefined,
  options: VerifyWebhookOptions = {},
): RiskAlert => {
  const fail = (why: string): never => {
    throw new SqreenAuthError('ERR_SQREEN_WEBHOOK_SIGNATURE', `Webhook rejected: ${why}.`)
  }
  // The receiver's own mistake, not the sender's: said as such, before any header is read.
  if (!((typeof secret === 'string' || Buffer.isBuffer(secret)) && webhookKey(secret).length > 0)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_SECRET',
      'verifyWebhook() needs the webhook secret (the string or Buffer given as "webhook.secret"); it got none or an empty key.',
    )
  }
  const id = header(headers, 'webhook-id') ?? fail('missing webhook-id header')
  const timestampText = header(headers, 'webhook-timestamp') ?? fail('missing webhook-timestamp header')
  const signatures = header(headers, 'webhook-signature') ?? fail('missing webhook-signature header')
  const timestamp = Number(timestampText)
  if (!Number.isInteger(timestamp)) fail('webhook-timestamp is not an integer')
  const now = Math.floor((options.now ?? Date.now)() / 1000)
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) fail('webhook-timestamp is outside the tolerance')
  const text = typeof body === 'string' ? body : body.toString('utf8')
  // Over the bytes as received (a Buffer is not decoded and encoded again, which would
  // change bytes that are not valid UTF-8), as the Standard Webhooks libraries sign.
  const expected = createHmac('sha256', webhookKey(secret)).update(`${id}.${timestamp}.`).update(body).digest()
  // Several signatures may be sent (key rotation), space-separated.
  const matches = signatures.split(' ').some((candidate) => {
    const [version, value] = candidate.split(',', 2)
    if (version !== 'v1' || value === undefined) return false
    const given = Buffer.from(value, 'base64')
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
  if (!matches) fail('no signature matches')
  try {
    return JSON.parse(text) as RiskAlert
  } catch {
    return fail('body is not JSON')
  }
}

/**
 * A signed POST per alert. The `webhook-id` is the alert's id on every retry so
 * receivers can de-duplicate; each attempt gets a fresh timestamp and signature.
 */
export const webhookChannel = (
  url: string,
  secret: string | Buffer,
  fetchFn: () => Promise<FetchLike>,
  timeoutMs: number,
  clock: () => number,
): Channel => ({
  name: 'webhook',
  async send(alert): Promise<SendResult> {
    const body = JSON.stringify(alert)
    const timestamp = Math.floor(clock() / 1000)
    const { status, retryAfter } = await postJson(
      await fetchFn(),
      url,
      body,
      {
        'webhook-id': alert.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook(alert.id, timestamp, body, secret),
      },
      timeoutMs,
    )
    return classifyStatus(status, retryAfter)
  },
})
