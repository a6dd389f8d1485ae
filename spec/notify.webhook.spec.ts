/**
 * Signed webhooks (Standard Webhooks) against a real receiver that checks every
 * request with `verifyWebhook`: the body and headers, the signature computed
 * independently, the same `webhook-id` on every retry, what `verifyWebhook`
 * refuses, `whsec_` secrets, no redirects followed, and a receiver that hangs
 * hitting the timeout without slowing logins down.
 */
import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { type Options, type RiskAlert, SqreenAuthError, sqreenAuth, verifyWebhook } from '../lib/index.js'
import { variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  login,
  SlackReceiver,
  serve,
  USERS,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const SECRET = 'webhook-spec-secret-0123456789abcdef'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const webhookApp = (receiver: WebhookReceiver, extra: Partial<Options> = {}, secret: string | Buffer = SECRET) =>
  alertApp(variant, {
    webhook: { url: receiver.url, secret },
    delivery: { baseDelay: 10, maxDelay: 50 },
    ...extra,
  })

/** The Standard Webhooks signature, computed here without the library. */
const expectedSignature = (id: string, timestamp: string, body: string, key: Buffer): string =>
  `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`

const header = (headers: Record<string, unknown>, name: string): string => {
  const value = headers[name]
  assert.equal(typeof value, 'string', `header ${name}`)
  return value as string
}

const rejected = (fn: () => unknown, why: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SqreenAuthError, `not a SqreenAuthError: ${String(err)}`)
    assert.equal(err.code, 'ERR_SQREEN_WEBHOOK_SIGNATURE')
    assert.match(err.message, why)
    return true
  })
}

/** One real, signed delivery to verify variations of. */
const oneDelivery = async (
  secret: string = SECRET,
): Promise<{ headers: Record<string, string>; body: string; timestamp: number }> => {
  const receiver = await WebhookReceiver.start(secret)
  const h = webhookApp(receiver, {}, secret)
  await attack(h.app, 'u-sample')
  await receiver.waitFor(1)
  await h.sqreen.close()
  await receiver.close()
  const { headers, body } = receiver.requests[0]!
  const picked = {
    'webhook-id': header(headers, 'webhook-id'),
    'webhook-timestamp': header(headers, 'webhook-timestamp'),
    'webhook-signature': header(headers, 'webhook-signature'),
  }
  return { headers: picked, body, timestamp: Number(picked['webhook-timestamp']) }
}

describe('webhook alerts', () => {
  it('POSTs { type: "user.risk.increased", ... } with Standard Webhooks headers that verifyWebhook accepts', async () => {
    const receiver = await WebhookReceiver.start(SECRET)
    const now = Date.now()
    const alerts: RiskAlert[] = []
    const h = webhookApp(receiver, { clock: () => now, onAlert: (a) => void alerts.push(a) })
    await attack(h.app, 'u-webhook', '203.0.113.9')
    await receiver.waitFor(1)
    await h.sqreen.close()
    await receiver.close()
    assert.equal(receiver.requests.length, 1)
    const [{ request, alert, error }] = receiver.deliveries as [(typeof receiver.deliveries)[0]]
    assert.equal(error, undefined, `verifyWebhook threw: ${String(error)}`)
    assert.ok(alert)
    assert.equal(request.method, 'POST')
    assert.match(String(request.headers['content-type']), /^application\/json/)
    assert.equal(alert.type, 'user.risk.increased')
    assert.match(alert.id, UUID)
    assert.equal(alert.userKey, 'id:u-webhook')
    assert.deepEqual(alert.identity, { id: 'u-webhook' })
    assert.equal(alert.rise, 20)
    assert.equal(alert.score, 20)
    assert.equal(alert.level, 10)
    assert.equal(alert.escalation, false)
    assert.equal(alert.windowMs, 24 * 3_600_000)
    assert.equal(alert.ip, '203.0.113.0/24')
    assert.deepEqual(
      alert.detections.map((d) => [d.detection, d.points]),
      [['attack_critical', 20]],
    )
    // The same alert the app's onAlert saw, byte for byte.
    assert.equal(request.body, JSON.stringify(alerts[0]))

    const id = header(request.headers, 'webhook-id')
    const timestamp = header(request.headers, 'webhook-timestamp')
    assert.equal(id, alert.id)
    assert.equal(timestamp, String(Math.floor(now / 1000)), 'the timestamp comes from the clock, in seconds')
    assert.equal(
      header(request.headers, 'webhook-signature'),
      expectedSignature(id, timestamp, request.body, Buffer.from(SECRET)),
    )
  })

  it('receiver down for the first two tries: delivered on the third, with the same webhook-id', async () => {
    const receiver = await WebhookReceiver.start(SECRET)
    await receiver.down()
    const alerts: RiskAlert[] = []
    // Backoff of 50-100 ms then 100-200 ms: time enough to bring the receiver back before the third try.
    const h = webhookApp(receiver, {
      onAlert: (a) => void alerts.push(a),
      delivery: { retries: 4, baseDelay: 100, maxDelay: 400 },
    })
    try {
      await attack(h.app, 'u-down')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_retried.webhook'] === 2, 'two refused tries')
      await receiver.up()
      await receiver.waitFor(1)
      await h.sqreen.close()
      assert.equal(receiver.requests.length, 1)
      assert.equal(receiver.verified.length, 1)
      assert.equal(header(receiver.requests[0]!.headers, 'webhook-id'), alerts[0]?.id)
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries_retried.webhook'], 2)
      assert.equal(counters['deliveries.webhook'], 1)
      assert.equal(counters['deliveries_failed.webhook'], undefined)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('retries after 5xx carry the same webhook-id and body, each freshly signed', async () => {
    const receiver = (await WebhookReceiver.start(SECRET)).script(500, 503, 200)
    const h = webhookApp(receiver)
    await attack(h.app, 'u-retry')
    await receiver.waitFor(3)
    await h.sqreen.close()
    await receiver.close()
    assert.equal(receiver.requests.length, 3)
    assert.equal(receiver.verified.length, 3, 'every attempt verifies')
    const ids = new Set(receiver.requests.map((r) => r.headers['webhook-id']))
    assert.equal(ids.size, 1, `webhook-ids: ${[...ids].join(', ')}`)
    assert.equal(new Set(receiver.requests.map((r) => r.body)).size, 1)
    assert.equal(h.sqreen.stats().counters['deliveries.webhook'], 1)
  })

  it('verifyWebhook refuses a tampered body, a wrong secret, a stale or future timestamp and missing headers', async () => {
    const { headers, body, timestamp } = await oneDelivery()
    const at = (seconds: number) => ({ now: () => seconds * 1000 })
    // The genuine delivery passes, also near the edges of the 5-minute tolerance.
    assert.equal(verifyWebhook(headers, body, SECRET).type, 'user.risk.increased')
    assert.equal(verifyWebhook(headers, Buffer.from(body), SECRET, at(timestamp + 299)).type, 'user.risk.increased')
    assert.equal(verifyWebhook(new Headers(headers), body, SECRET).type, 'user.risk.increased')

    rejected(() => verifyWebhook(headers, body.replace('"rise":20', '"rise":2'), SECRET), /no signature matches/)
    // Re-serialised JSON is not the signed bytes.
    rejected(() => verifyWebhook(headers, JSON.stringify(JSON.parse(body), null, 2), SECRET), /no signature/)
    rejected(() => verifyWebhook(headers, body, 'another-secret-0123456789abcdef'), /no signature matches/)
    rejected(() => verifyWebhook(headers, body, SECRET, at(timestamp + 301)), /tolerance/)
    rejected(() => verifyWebhook(headers, body, SECRET, at(timestamp - 301)), /tolerance/)
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const) {
      const { [name]: _, ...without } = headers
      rejected(() => verifyWebhook(without, body, SECRET), new RegExp(`missing ${name}`))
    }
    // A replay under another id or timestamp does not carry a valid signature.
    rejected(() => verifyWebhook({ ...headers, 'webhook-id': 'msg_other' }, body, SECRET), /no signature/)
    const shifted = String(timestamp + 1)
    rejected(() => verifyWebhook({ ...headers, 'webhook-timestamp': shifted }, body, SECRET), /no signature/)
    // Only v1 signatures count; any of several (key rotation) may match.
    const value = headers['webhook-signature']!.slice(3)
    rejected(() => verifyWebhook({ ...headers, 'webhook-signature': `v2,${value}` }, body, SECRET), /no signature/)
    const rotated = `v1,${Buffer.alloc(32).toString('base64')} ${headers['webhook-signature']}`
    assert.equal(verifyWebhook({ ...headers, 'webhook-signature': rotated }, body, SECRET).type, 'user.risk.increased')
  })

  it('whsec_ secrets are base64 keys', async () => {
    const key = randomBytes(32)
    const secret = `whsec_${key.toString('base64')}`
    const receiver = await WebhookReceiver.start(secret)
    const h = webhookApp(receiver, {}, secret)
    await attack(h.app, 'u-whsec')
    await receiver.waitFor(1)
    await h.sqreen.close()
    await receiver.close()
    const { headers, body } = receiver.requests[0]!
    assert.equal(receiver.verified.length, 1, String(receiver.deliveries[0]?.error))
    const id = header(headers, 'webhook-id')
    const timestamp = header(headers, 'webhook-timestamp')
    // Signed with the decoded key, not with the characters of the secret.
    assert.equal(header(headers, 'webhook-signature'), expectedSignature(id, timestamp, body, key))
    assert.equal(verifyWebhook(headers, body, key).userKey, 'id:u-whsec')
    rejected(() => verifyWebhook(headers, body, Buffer.from(secret)), /no signature matches/)
    // A whsec_ key that is not standard padded base64 (base64url, no padding) is refused at
    // setup: Node would decode it, the Standard Webhooks libraries would not.
    for (const bad of [`whsec_${key.toString('base64url').replace(/=+$/, '')}`, `whsec_${key.toString('base64')}!!`]) {
      assert.throws(
        () =>
          sqreenAuth({
            passport: new (variant.passport.Passport as new () => never)(),
            webhook: { url: 'http://127.0.0.1:9/', secret: bad },
          }),
        (err: unknown) =>
          err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_SECRET' && /standard base64/.test(err.message),
      )
    }
  })

  it('interoperates with the official Standard Webhooks library, both ways', async () => {
    const secret = `whsec_${randomBytes(32).toString('base64')}`
    const { headers, body } = await oneDelivery(secret)
    // Ours, checked by theirs.
    const official = new Webhook(secret)
    assert.equal((official.verify(body, headers) as RiskAlert).type, 'user.risk.increased')
    // Theirs, checked by ours, with header names as a framework may keep them.
    const id = 'msg_official'
    const now = new Date()
    const signature = official.sign(id, now, body)
    const theirs = {
      'Webhook-Id': id,
      'Webhook-Timestamp': String(Math.floor(now.getTime() / 1000)),
      'Webhook-Signature': signature,
    }
    assert.equal(verifyWebhook(theirs, body, secret).type, 'user.risk.increased')
    // A body that is not valid UTF-8 is checked over its bytes, as the library signs them.
    const bytes = Buffer.concat([
      Buffer.from('{"type":"user.risk.increased","note":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}'),
    ])
    const signedBytes = official.sign(id, now, bytes)
    assert.equal(
      verifyWebhook({ ...theirs, 'Webhook-Signature': signedBytes }, bytes, secret).type,
      'user.risk.increased',
    )
    // A plain (non-whsec) secret is raw bytes: the official library reads it with { format: 'raw' }.
    const plain = 'a-plain-shared-secret-0123456789abcdef'
    const raw = await oneDelivery(plain)
    assert.equal(
      (new Webhook(new TextEncoder().encode(plain), { format: 'raw' }).verify(raw.body, raw.headers) as RiskAlert).type,
      'user.risk.increased',
    )
  })

  for (const status of [302, 307]) {
    it(`does not follow a ${status} redirect`, async () => {
      const elsewhere = await SlackReceiver.start()
      const receiver = (await WebhookReceiver.start(SECRET)).script({
        status,
        headers: { location: elsewhere.url },
      })
      const h = webhookApp(receiver)
      try {
        await attack(h.app, 'u-redirect')
        await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.webhook'] === 1, 'the delivery to fail')
        await h.sqreen.close()
        assert.equal(receiver.requests.length, 1)
        assert.equal(elsewhere.requests.length, 0, 'the signed alert was sent to the redirect target')
        assert.equal(h.sqreen.stats().counters['deliveries_retried.webhook'], undefined)
        assert.ok(h.logger.lines.some((l) => l.includes('delivery_failed.webhook') && l.includes(String(status))))
      } finally {
        await h.sqreen.close()
        await receiver.close()
        await elsewhere.close()
      }
    })
  }

  it('a receiver that never answers hits the timeout, is retried, and does not slow logins', async () => {
    const receiver = (await WebhookReceiver.start(SECRET)).script('hang', 'hang')
    const h = webhookApp(receiver, { delivery: { timeout: 200, retries: 1, baseDelay: 10, maxDelay: 50 } })
    const app = await serve(h.app)
    const jane = USERS[0]!
    try {
      const baseline = []
      for (let i = 0; i < 3; i++) baseline.push(await login(app.url, jane.username, jane.password))
      await attack(app.url, 'u-slow')
      await receiver.waitFor(1)
      // The first delivery is now hanging: log in meanwhile.
      const during = await login(app.url, jane.username, jane.password)
      const answeredAt = Date.now()
      await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.webhook'] === 1, 'both tries to time out')
      await h.sqreen.close()
      // The receiver sees each abort once the client's socket closes, a moment after the client gave up.
      await waitUntil(
        () => receiver.requests.every((r) => r.abortedAt !== undefined),
        'the receiver to see the aborted requests',
        1000,
      )

      assert.equal(receiver.requests.length, 2, 'timed out, retried once')
      for (const r of receiver.requests) {
        assert.ok(r.abortedAt !== undefined, 'the client gave up on the hanging request')
        const waited = r.abortedAt - r.at
        assert.ok(waited >= 150 && waited < 1500, `aborted after ${waited} ms with a 200 ms timeout`)
      }
      assert.equal(receiver.requests[0]?.headers['webhook-id'], receiver.requests[1]?.headers['webhook-id'])
      assert.equal(during.status, 200)
      assert.ok(
        answeredAt < (receiver.requests[0]?.abortedAt ?? 0),
        'the login was answered only after the hanging delivery gave up',
      )
      const slowest = Math.max(...baseline.map((b) => b.ms))
      assert.ok(
        during.ms < Math.max(150, slowest * 3),
        `login took ${during.ms.toFixed(0)} ms (baseline ${slowest.toFixed(0)} ms)`,
      )
      assert.ok(h.logger.lines.some((l) => l.includes('delivery_failed.webhook') && l.includes('after 2 attempt(s)')))
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })
})
