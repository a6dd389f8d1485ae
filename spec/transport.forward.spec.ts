/**
 * The forwarder against a real hub router on 127.0.0.1: a real Express app with
 * passport-local ships its events in signed batches (HS256 and Ed25519), bounded
 * in size and time; the hub scores them with the same engine and alerts. Then the
 * unhappy paths: a hub that is down (backoff with jitter, no login slowed,
 * everything delivered once it is back), one that hangs, 429 with Retry-After,
 * 413 (batches halved), a key the hub refuses, a full queue (oldest dropped and
 * counted, the count reported to the hub), flush on close(), and on SIGTERM /
 * SIGINT only when asked, without changing how the process ends.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { decodeProtectedHeader, flattenedVerify } from 'jose'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { AuthEvent } from '../lib/event.js'
import { type Options, SqreenAuthError, sqreenAuth } from '../lib/index.js'
import { nodeFetch } from '../lib/notify/http.js'
import { createForwarder } from '../lib/transport/forwarder.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, BATCH_TYP, WIRE_VERSION } from '../lib/transport/wire.js'
import { MemoryLogger, variants } from './helpers/apps.js'
import { ed25519, forwardConfig, HS_SECRET, recordingFetch, sampleEvent, startHub } from './helpers/hub.js'
import { spawnTsx } from './helpers/process.js'
import { alertApp, failLogins, login, SlackReceiver, serve, USERS, waitUntil } from './helpers/receivers.js'

const variant = variants[0]!
const FAST = { baseDelay: 20, maxDelay: 200 } as const
const jane = USERS[0]!

/** The app under test: passport-local, forwarding to `url`, scoring only at the hub. */
const forwardingApp = (
  forward: Partial<NonNullable<Options['forward']>> & { url: string },
  extra: Partial<Options> = {},
) => {
  const recorder = recordingFetch()
  const h = alertApp(variant, {
    scoring: false,
    fetch: recorder.fetch,
    forward: { key: HS_SECRET, flushInterval: 20, ...FAST, ...forward },
    ...extra,
  })
  return { ...h, sent: recorder.sent }
}

describe('forwarding to a hub', () => {
  it('HS256: a brute force is forwarded in signed batches (size-bounded), scored and alerted at the hub', async () => {
    const hub = await startHub()
    const h = forwardingApp({ url: hub.ingestUrl, batchSize: 4, flushInterval: 30 })
    const app = await serve(h.app)
    try {
      await failLogins(app.url, jane.username, 12, { ip: '198.51.100.20' })
      await h.log.waitFor(12)
      await waitUntil(() => hub.counter('hub.accepted') === 12, 'the hub to accept 12 events')
      // The hub counts before it answers: wait for the forwarder to have read every answer.
      await waitUntil(() => h.sqreen.stats().counters['forward.sent'] === 12, 'the forwarder to see the answers')

      // What went over the wire: JSON batches of at most 4 events, each with a detached JWS
      // (HS256, our typ, an unencoded payload) that verifies over the exact body bytes; unique jti.
      assert.ok(h.sent.length >= 3, `${h.sent.length} batches for 12 events of at most 4`)
      for (const batch of h.sent) {
        assert.equal(batch.url, hub.ingestUrl)
        assert.deepEqual(batch.header, { alg: 'HS256', typ: BATCH_TYP, b64: false, crit: ['b64'] })
        const [protectedHeader, payload, signature] = batch.signature.split('.')
        assert.equal(payload, '', 'detached: no payload in the header')
        const verified = await flattenedVerify(
          { protected: protectedHeader ?? '', signature: signature ?? '', payload: batch.bytes },
          new TextEncoder().encode(HS_SECRET),
          { algorithms: ['HS256'] },
        )
        assert.deepEqual(JSON.parse(Buffer.from(verified.payload).toString()), batch.claims)
        assert.equal(batch.claims.v, WIRE_VERSION)
        assert.ok(batch.claims.events.length >= 1 && batch.claims.events.length <= 4)
        assert.ok(batch.claims.exp - batch.claims.iat <= 60 && batch.claims.exp > batch.claims.iat)
        assert.equal(batch.status, 200)
      }
      assert.equal(new Set(h.sent.map((b) => b.claims.jti)).size, h.sent.length, 'jti is unique per batch')
      // Exactly the app's events, in order, unchanged.
      assert.deepEqual(
        h.sent.flatMap((b) => b.claims.events.map((e) => e.id)),
        h.log.events.map((e) => e.id),
      )
      assert.deepEqual(h.sent[0]?.claims.events[0], JSON.parse(JSON.stringify(h.log.events[0])))

      // Scored at the hub (the app does not score: scoring: false).
      const risk = await hub.hub.risk(`login:${jane.username}`)
      assert.ok(risk.rise24h > 10, `rise ${risk.rise24h}`)
      assert.ok(risk.entries.some((e) => e.detection === 'brute_force'))
      assert.equal((await h.sqreen.risk(`login:${jane.username}`)).entries.length, 0, 'no local scoring')
      await waitUntil(() => hub.alerts.length === 1, 'one alert at the hub')
      assert.equal(hub.alerts[0]?.userKey, `login:${jane.username}`)
      assert.equal(h.sqreen.stats().counters['forward.sent'], 12)
      assert.equal(h.sqreen.stats().counters['forward.batches'], h.sent.length)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('EdDSA: signed with the Ed25519 private key (KeyObject or PEM), verified with the public key', async () => {
    const keys = ed25519()
    const hub = await startHub({ key: keys.publicPem })
    for (const key of [keys.privateKey, keys.privatePem]) {
      const h = forwardingApp({ url: hub.ingestUrl, key })
      const app = await serve(h.app)
      try {
        const before = hub.counter('hub.accepted')
        await login(app.url, jane.username, jane.password)
        await login(app.url, jane.username, 'wrong')
        await waitUntil(() => hub.counter('hub.accepted') === before + 2, 'two events at the hub')
        assert.equal(h.sent[0]?.header.alg, 'EdDSA')
        assert.equal(h.sent[0]?.header.b64, false)
        assert.equal(decodeProtectedHeader(h.sent[0]?.signature ?? '').alg, 'EdDSA')
        const [protectedHeader, , signature] = (h.sent[0]?.signature ?? '').split('.')
        await flattenedVerify(
          {
            protected: protectedHeader ?? '',
            signature: signature ?? '',
            payload: h.sent[0]?.bytes ?? new Uint8Array(),
          },
          keys.publicKey,
          { algorithms: ['EdDSA'] },
        )
      } finally {
        await h.sqreen.close()
        await app.close()
      }
    }
    // A different Ed25519 key is refused: the hub holds only the right public key.
    const other = ed25519()
    const h = forwardingApp({ url: hub.ingestUrl, key: other.privateKey })
    const app = await serve(h.app)
    try {
      await login(app.url, jane.username, 'wrong')
      await waitUntil(() => h.sqreen.stats().counters['forward.failed'] === 1, 'the batch to be refused')
      assert.equal(h.sent[0]?.status, 401)
      assert.ok(h.logger.lines.some((l) => l.includes('forward_refused') && l.includes('HTTP 401')))
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('time-bounded: a lone event leaves after flushInterval, not when a batch fills up', async () => {
    const hub = await startHub()
    const h = forwardingApp({ url: hub.ingestUrl, batchSize: 500, flushInterval: 150 })
    const app = await serve(h.app)
    try {
      const started = Date.now()
      await login(app.url, jane.username, jane.password)
      await waitUntil(() => hub.counter('hub.accepted') === 1, 'the event at the hub', 2000)
      const waited = Date.now() - started
      assert.ok(waited >= 140, `sent after ${waited} ms, before the 150 ms interval`)
      assert.equal(h.sent.length, 1)
      assert.equal(h.sent[0]?.claims.events.length, 1)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('hub down then up: backoff with jitter, logins not slowed, every event delivered once after', async () => {
    const hub = await startHub()
    const h = forwardingApp({ url: hub.ingestUrl, baseDelay: 40, maxDelay: 400 })
    const app = await serve(h.app)
    try {
      const baseline = []
      for (let i = 0; i < 3; i++) baseline.push(await login(app.url, jane.username, jane.password))
      await waitUntil(() => hub.counter('hub.accepted') === 3, 'the first events')
      await hub.down()
      const during = []
      for (let i = 0; i < 6; i++) during.push(await login(app.url, jane.username, `wrong-${i}`))
      await waitUntil(() => (h.sqreen.stats().counters['forward.retries'] ?? 0) >= 4, 'four failed tries', 5000)
      const failures = h.sent.filter((b) => b.error !== undefined)
      const gaps = failures.slice(1).map((b, i) => b.at - (failures[i]?.at ?? 0))
      // Equal jitter: try k waits between base*2^k/2 and base*2^k (40-ish, 80, 160...).
      assert.ok((gaps[0] ?? 0) >= 15, `first retry after ${gaps[0]} ms`)
      assert.ok((gaps[2] ?? 0) >= 70, `third retry after ${gaps[2]} ms (backoff grows)`)
      assert.ok((gaps[2] ?? 0) >= (gaps[0] ?? 0), `gaps ${gaps.join(', ')} should grow`)
      const slowest = Math.max(...baseline.map((b) => b.ms))
      for (const d of during) {
        assert.equal(d.status, 401)
        assert.ok(
          d.ms < Math.max(150, slowest * 3),
          `login took ${d.ms.toFixed(0)} ms (baseline ${slowest.toFixed(0)})`,
        )
      }
      assert.equal(hub.counter('hub.accepted'), 3, 'nothing arrived while down')

      await hub.up()
      await waitUntil(() => hub.counter('hub.accepted') === 9, 'the queued events after the hub is back', 5000)
      await h.sqreen.close()
      assert.equal(hub.counter('hub.accepted'), 9, 'each event once')
      assert.equal(hub.counter('hub.duplicates'), 0)
      assert.equal(h.sqreen.stats().counters['forward.dropped'] ?? 0, 0)
      assert.ok(h.logger.lines.some((l) => l.includes('forward_unreachable')))
      const risk = await hub.hub.risk('id:1')
      assert.ok(
        risk.entries.some((e) => e.detection === 'wrong_password'),
        'the failures were scored',
      )
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('a hub that hangs: the request times out and is retried; logins are not slowed', async () => {
    const receiver = (await SlackReceiver.start()).script('hang')
    const h = forwardingApp({ url: receiver.url, timeout: 150 })
    const app = await serve(h.app)
    try {
      await login(app.url, jane.username, jane.password)
      await receiver.waitFor(1)
      const during = await login(app.url, jane.username, jane.password)
      assert.ok(during.ms < 150, `login took ${during.ms.toFixed(0)} ms while the hub hung`)
      await receiver.waitFor(2, 3000)
      assert.equal(h.sent[0]?.error, 'AbortError')
      // The retry is the same signed batch (same jti): were it received after all, the hub
      // refuses the copy as a replay instead of scoring it twice.
      assert.equal(h.sent[1]?.claims.events[0]?.id, h.sent[0]?.claims.events[0]?.id)
      assert.equal(h.sent[1]?.claims.jti, h.sent[0]?.claims.jti)
      assert.equal(h.sent[1]?.signature, h.sent[0]?.signature)
      assert.equal(h.sent[1]?.body, h.sent[0]?.body)
      assert.equal(String(receiver.requests[0]?.headers['content-type']), BATCH_CONTENT_TYPE)
      // The detached JWS in its header, the body on the wire exactly the bytes it signs.
      assert.equal(receiver.requests[0]?.headers[BATCH_SIGNATURE_HEADER], h.sent[0]?.signature)
      assert.equal(receiver.requests[0]?.body, h.sent[0]?.body)
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })

  it('429 with Retry-After: waits what the hub asks, not the (much shorter) backoff', async () => {
    const receiver = (await SlackReceiver.start()).script({ status: 429, headers: { 'retry-after': '1' } })
    const h = forwardingApp({ url: receiver.url, baseDelay: 10, maxDelay: 20 })
    const app = await serve(h.app)
    try {
      await login(app.url, jane.username, jane.password)
      await receiver.waitFor(2, 4000)
      const [first, second] = receiver.requests
      const waited = (second?.at ?? 0) - (first?.at ?? 0)
      assert.ok(waited >= 950, `retried after ${waited} ms; Retry-After said 1 s`)
      assert.ok(waited < 2500, `retried after ${waited} ms`)
      // The receiver records the retry before the forwarder has read its 200: wait for that.
      await waitUntil(() => h.sqreen.stats().counters['forward.sent'] === 1, 'the retried batch counted as sent', 2000)
      assert.equal(h.sqreen.stats().counters['forward.sent'], 1)
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })

  it("a 401 for the batch's times (clock skew) keeps the events and retries; each outage is logged again", async () => {
    const skew = {
      status: 401,
      headers: { 'content-type': 'application/json' },
      body: '{"error":"expired","message":"the batch has expired (exp); check the sender clock"}',
    }
    const receiver = (await SlackReceiver.start()).script(skew, 200, 503, 200)
    const h = forwardingApp({ url: receiver.url, baseDelay: 10, maxDelay: 20 })
    const app = await serve(h.app)
    try {
      await login(app.url, jane.username, jane.password)
      await waitUntil(
        () => h.sqreen.stats().counters['forward.sent'] === 1,
        'the batch delivered after the clock error',
        3000,
      )
      assert.equal(h.sqreen.stats().counters['forward.failed'] ?? 0, 0, 'not dropped as a key error')
      const clock = h.logger.lines.filter((l) => l.includes("is this machine's clock right"))
      assert.equal(clock.length, 1, h.logger.lines.join('\n'))
      assert.ok(!h.logger.lines.some((l) => l.includes('forward.key must be')), 'not blamed on the key')
      // A second outage after a delivery is logged again.
      await login(app.url, jane.username, jane.password)
      await waitUntil(() => h.sqreen.stats().counters['forward.sent'] === 2, 'the second batch delivered', 3000)
      const unreachable = h.logger.lines.filter((l) => l.includes('forward_unreachable'))
      assert.equal(unreachable.length, 2, h.logger.lines.join('\n'))
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })

  it('413 from the hub: batches are halved until they fit, nothing is lost', async () => {
    const hub = await startHub({ limits: { body: 4000 } })
    const h = forwardingApp({ url: hub.ingestUrl, batchSize: 8, flushInterval: 500 })
    const app = await serve(h.app)
    try {
      for (let i = 0; i < 8; i++) await login(app.url, jane.username, `wrong-${i}`)
      await waitUntil(() => hub.counter('hub.accepted') === 8, 'all 8 events', 5000)
      assert.ok(
        h.sent.some((b) => b.status === 413),
        'the full batch was too large',
      )
      // The size that fits is kept: the next full batches are not sent whole (and refused) again.
      const refusedBefore = h.sent.filter((b) => b.status === 413).length
      for (let i = 0; i < 8; i++) await login(app.url, jane.username, `again-${i}`)
      await waitUntil(() => hub.counter('hub.accepted') === 16, 'all 16 events', 5000)
      assert.equal(h.sent.filter((b) => b.status === 413).length, refusedBefore)
      assert.ok(h.sent.filter((b) => b.status === 200).every((b) => b.claims.events.length <= 4))
      assert.equal(h.sqreen.stats().counters['forward.dropped'] ?? 0, 0)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('422 from the hub (events it refuses): counted as rejected, logged once, not retried', async () => {
    const hub = await startHub()
    // An application clock an hour ahead: the hub refuses events from the future.
    const h = forwardingApp({ url: hub.ingestUrl }, { clock: () => Date.now() + 3_600_000 })
    const app = await serve(h.app)
    try {
      await login(app.url, jane.username, 'wrong')
      await waitUntil(() => h.sqreen.stats().counters['forward.rejected'] === 1, 'the rejection to be counted')
      assert.equal(h.sent.length, 1, 'not retried')
      assert.equal(h.sent[0]?.status, 422)
      assert.equal(hub.counter('hub.rejected'), 1)
      assert.ok(h.logger.lines.some((l) => l.includes('forward_events_rejected') && l.includes('at is in the future')))
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('a full queue drops the oldest events, counts them and reports the count to the hub', async () => {
    const hub = await startHub()
    const diag = createDiagnostics(new MemoryLogger())
    const recorder = recordingFetch()
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { flushIntervalMs: 10_000, maxQueued: 5 }),
      async () => recorder.fetch,
      diag,
    )
    try {
      // Twelve in one turn: nothing can be sent in between, so the first seven go.
      const events = Array.from({ length: 12 }, (_, i) => sampleEvent({ identity: { login: `u${i}` } }))
      for (const e of events) forwarder.push(e)
      assert.equal(forwarder.size, 5)
      assert.equal(diag.snapshot().counters['forward.dropped'], 7)
      await waitUntil(() => hub.counter('hub.accepted') === 5, 'the 5 newest at the hub')
      assert.deepEqual(
        recorder.sent[0]?.claims.events.map((e) => e.id),
        events.slice(7).map((e) => e.id),
      )
      assert.equal(recorder.sent[0]?.claims.dropped, 7)
      assert.equal(hub.counter('hub.dropped_upstream'), 7)
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })

  it('events are written as JSON when pushed: one that cannot be is counted and skipped, and push never throws', async () => {
    const hub = await startHub()
    const logger = new MemoryLogger()
    const diag = createDiagnostics(logger)
    const recorder = recordingFetch()
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { flushIntervalMs: 10_000 }),
      async () => recorder.fetch,
      diag,
    )
    try {
      const first = sampleEvent({ identity: { login: 'first' } })
      // A property a listener could not have put there through the SDK (it checks values),
      // standing for anything JSON.stringify refuses.
      const bad = { ...sampleEvent(), properties: { n: 1n } } as unknown as AuthEvent
      const last = sampleEvent({ identity: { login: 'last' } })
      forwarder.push(first)
      assert.doesNotThrow(() => forwarder.push(bad))
      forwarder.push(last)
      // What is sent is the event as it was pushed (a copy), not as it is when the batch goes.
      ;(first.identity as Record<string, unknown>).login = 'changed later'
      assert.equal(forwarder.size, 2)
      assert.equal(diag.snapshot().counters['forward.failed'], 1)
      assert.ok(logger.lines.some((l) => l.includes('forward_serialize_failed')))
      await forwarder.flush()
      assert.equal(hub.counter('hub.accepted'), 2)
      assert.deepEqual(
        recorder.sent.flatMap((b) => b.claims.events.map((e) => e.identity)),
        [{ login: 'first' }, { login: 'last' }],
      )
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })

  it('an event with no JSON form costs no queued event, even with the queue full', async () => {
    const hub = await startHub()
    const diag = createDiagnostics(new MemoryLogger())
    const recorder = recordingFetch()
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { flushIntervalMs: 10_000, batchSize: 3, maxQueued: 3 }),
      async () => recorder.fetch,
      diag,
    )
    try {
      const kept = [1, 2, 3].map((i) => sampleEvent({ identity: { login: `kept${i}` } }))
      for (const e of kept) forwarder.push(e)
      // Pushed in the same turn as the three: nothing has left the queue yet.
      forwarder.push({ ...sampleEvent(), properties: { n: 1n } } as unknown as AuthEvent)
      // A toJSON answering undefined: JSON.stringify gives undefined, which a join would turn into "[a,,b]".
      forwarder.push({ ...sampleEvent(), toJSON: () => undefined } as unknown as AuthEvent)
      assert.equal(forwarder.size, 3)
      assert.equal(diag.snapshot().counters['forward.failed'], 2)
      assert.equal(diag.snapshot().counters['forward.dropped'], undefined)
      await forwarder.flush()
      assert.equal(hub.counter('hub.accepted'), 3)
      assert.deepEqual(
        recorder.sent.flatMap((b) => b.claims.events.map((e) => e.identity)),
        kept.map((e) => e.identity),
      )
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })

  it('queue overflow through real logins while the hub is down is counted, and the rest delivered', async () => {
    const hub = await startHub()
    await hub.down()
    const h = forwardingApp({ url: hub.ingestUrl, batchSize: 5, maxQueued: 5 })
    const app = await serve(h.app)
    try {
      for (let i = 0; i < 12; i++) await login(app.url, jane.username, `wrong-${i}`)
      await h.log.waitFor(12)
      assert.equal(h.sqreen.stats().counters['forward.dropped'], 7)
      assert.ok(h.logger.lines.some((l) => l.includes('forward_queue_full')))
      await hub.up()
      await waitUntil(() => hub.counter('hub.accepted') === 5, 'the 5 kept events', 5000)
      // A batch reports the drops counted when it was signed; a retry signed just before the
      // last drop leaves that one for the next batch. One more login makes sure it went out.
      await login(app.url, jane.username, 'one-more')
      await waitUntil(() => hub.counter('hub.accepted') === 6, 'the next event', 5000)
      assert.equal(hub.counter('hub.dropped_upstream'), 7)
      assert.equal(h.sqreen.stats().counters['forward.dropped'], 7)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('close() flushes what is queued at once (no waiting for flushInterval)', async () => {
    const hub = await startHub()
    const h = forwardingApp({ url: hub.ingestUrl, flushInterval: 60_000 })
    const app = await serve(h.app)
    try {
      for (let i = 0; i < 3; i++) await login(app.url, jane.username, jane.password)
      await h.log.waitFor(3)
      await new Promise((r) => setTimeout(r, 50))
      assert.equal(hub.counter('hub.accepted'), 0, 'still waiting for the interval')
      const started = Date.now()
      await h.sqreen.close()
      assert.equal(hub.counter('hub.accepted'), 3)
      assert.ok(Date.now() - started < 1000)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('events pushed while close() flushes are sent too (a graceful shutdown still answers logins); after it, dropped', async () => {
    const hub = await startHub()
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { flushIntervalMs: 60_000, closeTimeoutMs: 3000 }),
      nodeFetch,
      diag,
    )
    try {
      forwarder.push(sampleEvent({ identity: { login: 'before' } }))
      const closing = forwarder.close()
      forwarder.push(sampleEvent({ identity: { login: 'during' } }))
      await closing
      assert.equal(hub.counter('hub.accepted'), 2)
      forwarder.push(sampleEvent({ identity: { login: 'after' } }))
      assert.equal(diag.snapshot().counters['forward.dropped'], 1)
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })

  it('close() with the hub down gives up after forward.closeTimeout and counts what it abandoned', async () => {
    const hub = await startHub()
    await hub.down()
    const h = forwardingApp({ url: hub.ingestUrl, flushInterval: 60_000, closeTimeout: 300 })
    const app = await serve(h.app)
    try {
      for (let i = 0; i < 2; i++) await login(app.url, jane.username, jane.password)
      await h.log.waitFor(2)
      const started = Date.now()
      await h.sqreen.close()
      const took = Date.now() - started
      assert.ok(took >= 250 && took < 1500, `close() took ${took} ms with a 300 ms closeTimeout`)
      assert.equal(h.sqreen.stats().counters['forward.abandoned'], 2)
      assert.ok(h.logger.lines.some((l) => l.includes('forward_abandoned')))
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })
})

describe('forward options', () => {
  const { Passport } = variant.passport
  const make = (forward: unknown) => () =>
    sqreenAuth({ passport: new Passport(), forward: forward as Options['forward'], logger: new MemoryLogger() })
  const fails = (forward: unknown, code: string, message: RegExp): void => {
    assert.throws(make(forward), (err: unknown) => {
      assert.ok(err instanceof SqreenAuthError, String(err))
      assert.equal(err.code, code)
      assert.match(err.message, message)
      return true
    })
  }
  const url = 'https://hub.example/sqreen/v1/events'

  it('refuses weak, public, unsupported and missing keys with ERR_SQREEN_FORWARD_KEY', () => {
    const keys = ed25519()
    fails({ url }, 'ERR_SQREEN_FORWARD_KEY', /"forward.key" is required/)
    fails({ url, key: 'short-secret' }, 'ERR_SQREEN_FORWARD_KEY', /12 bytes; it must have at least 32/)
    fails({ url, key: keys.publicKey }, 'ERR_SQREEN_FORWARD_KEY', /public key.*private/)
    fails({ url, key: keys.publicPem }, 'ERR_SQREEN_FORWARD_KEY', /public key PEM/)
    fails(
      { url, key: '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----' },
      'ERR_SQREEN_FORWARD_KEY',
      /not a readable/,
    )
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    fails({ url, key: rsa.privateKey }, 'ERR_SQREEN_FORWARD_KEY', /rsa private key; only Ed25519/)
    fails({ url, key: 42 }, 'ERR_SQREEN_FORWARD_KEY', /got number/)
  })

  it('refuses a bad URL, unknown keys (with a hint) and out-of-range tuning', () => {
    fails({ url: 'ftp://hub', key: HS_SECRET }, 'ERR_SQREEN_URL', /"forward.url" must be an http\(s\) URL/)
    fails({ key: HS_SECRET }, 'ERR_SQREEN_URL', /"forward.url"/)
    fails(
      { url, key: HS_SECRET, batchsize: 10 },
      'ERR_SQREEN_UNKNOWN_OPTION',
      /"forward.batchsize".*Did you mean "batchSize"\?/,
    )
    fails({ url, key: HS_SECRET, batchSize: 0 }, 'ERR_SQREEN_OPTION_TYPE', /"forward.batchSize" must be an integer/)
    fails(
      { url, key: HS_SECRET, batchSize: 100, maxQueued: 10 },
      'ERR_SQREEN_OPTION_TYPE',
      /at least "forward.batchSize"/,
    )
    fails(
      { url, key: HS_SECRET, expiresIn: '2h' },
      'ERR_SQREEN_OPTION_TYPE',
      /"forward.expiresIn" must be from 1 s to 1 h/,
    )
    fails({ url, key: HS_SECRET, flushInterval: 'soon' }, 'ERR_SQREEN_OPTION_TYPE', /"forward.flushInterval"/)
    fails(
      { url, key: HS_SECRET, flushOnExit: 'yes' },
      'ERR_SQREEN_OPTION_TYPE',
      /"forward.flushOnExit" must be true or false/,
    )
    fails('https://hub', 'ERR_SQREEN_OPTION_TYPE', /"forward" must be an object/)
    assert.throws(
      () => sqreenAuth({ passport: new Passport(), forwrd: {} } as Partial<Options>),
      /Unknown option "forwrd"\. Did you mean "forward"\?/,
    )
  })

  it('accepts the documented forms, leaves the caller object alone and warns about plain http to another host', async () => {
    const forward = { url, key: HS_SECRET, flushInterval: '2s', expiresIn: '30s' }
    const copy = structuredClone(forward)
    const logger = new MemoryLogger()
    const sqreen = sqreenAuth({ passport: new Passport(), forward, logger })
    assert.deepEqual(forward, copy)
    assert.equal(logger.lines.length, 0)
    await sqreen.close()
    const plain = sqreenAuth({
      passport: new Passport(),
      forward: { url: 'http://hub.internal/v1/events', key: HS_SECRET },
      logger,
    })
    assert.ok(logger.lines.some((l) => l.includes('forward_plain_http')))
    await plain.close()
  })
})

describe('flush on SIGTERM / SIGINT (forward.flushOnExit)', () => {
  const children: ChildProcess[] = []
  after(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  /** An app in its own process, forwarding to our hub; returns once it listens. */
  const spawnApp = async (env: Record<string, string>) => {
    const {
      child,
      stdout,
      stderr,
      exited: ended,
    } = spawnTsx('spec/fixtures/forward-app.ts', { ...process.env, ...env }, children)
    // Bounded, so a process that does not end fails the test instead of hanging it.
    const exited = Promise.race([
      ended,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('the app did not exit within 10 s')), 10_000).unref(),
      ),
    ])
    exited.catch(() => {})
    await waitUntil(() => /listening on (\d+)/.test(stdout()) || child.exitCode !== null, 'the app to listen', 20_000)
    const port = /listening on (\d+)/.exec(stdout())?.[1]
    if (!port) throw new Error(`the app did not start: ${stderr()}`)
    return { child, url: `http://127.0.0.1:${port}`, exited, stdout, stderr }
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} with no handler of the app: flushes, then the process dies of ${signal} as it would have`, async () => {
      const hub = await startHub()
      try {
        const app = await spawnApp({ HUB_URL: hub.ingestUrl, FLUSH_ON_EXIT: '1' })
        for (let i = 0; i < 3; i++) await login(app.url, jane.username, `wrong-${i}`)
        await new Promise((r) => setTimeout(r, 100))
        assert.equal(hub.counter('hub.accepted'), 0, 'nothing sent yet (flushInterval is 60 s)')
        app.child.kill(signal)
        assert.deepEqual(await app.exited, { code: null, signal })
        assert.equal(hub.counter('hub.accepted'), 3)
      } finally {
        await hub.close()
      }
    })
  }

  it("the app's own SIGTERM handler runs and decides the exit code; events are flushed", async () => {
    const hub = await startHub()
    try {
      const app = await spawnApp({ HUB_URL: hub.ingestUrl, FLUSH_ON_EXIT: '1', APP_HANDLER: '1' })
      for (let i = 0; i < 2; i++) await login(app.url, jane.username, jane.password)
      await new Promise((r) => setTimeout(r, 100))
      app.child.kill('SIGTERM')
      assert.deepEqual(await app.exited, { code: 3, signal: null })
      assert.match(app.stdout(), /app handler: SIGTERM/)
      assert.equal(hub.counter('hub.accepted'), 2)
    } finally {
      await hub.close()
    }
  })

  it('an app handler added with process.once before sqreenAuth() finishes its clean-up (the process is not killed under it)', async () => {
    const hub = await startHub()
    try {
      const app = await spawnApp({ HUB_URL: hub.ingestUrl, FLUSH_ON_EXIT: '1', APP_ONCE: '1' })
      await login(app.url, jane.username, jane.password)
      await new Promise((r) => setTimeout(r, 100))
      app.child.kill('SIGTERM')
      assert.deepEqual(await app.exited, { code: 4, signal: null })
      assert.match(app.stdout(), /app once handler: cleanup done/)
      assert.equal(hub.counter('hub.accepted'), 1)
    } finally {
      await hub.close()
    }
  })

  it('two sqreenAuth() flushing on exit: both flush, then the process dies of SIGTERM', async () => {
    const hub = await startHub()
    try {
      const app = await spawnApp({ HUB_URL: hub.ingestUrl, FLUSH_ON_EXIT: '1', TWO: '1' })
      for (let i = 0; i < 2; i++) await login(app.url, jane.username, `wrong-${i}`)
      const second = await fetch(`${app.url}/login2`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'someone', password: 'x' }),
      })
      assert.equal(second.status, 401)
      await new Promise((r) => setTimeout(r, 100))
      app.child.kill('SIGTERM')
      assert.deepEqual(await app.exited, { code: null, signal: 'SIGTERM' })
      assert.equal(hub.counter('hub.accepted'), 3, 'the events of both')
    } finally {
      await hub.close()
    }
  })

  it('off by default: SIGTERM ends the process at once and queued events are not sent', async () => {
    const hub = await startHub()
    try {
      const app = await spawnApp({ HUB_URL: hub.ingestUrl })
      await login(app.url, jane.username, jane.password)
      await new Promise((r) => setTimeout(r, 100))
      app.child.kill('SIGTERM')
      assert.deepEqual(await app.exited, { code: null, signal: 'SIGTERM' })
      await new Promise((r) => setTimeout(r, 100))
      assert.equal(hub.counter('hub.accepted'), 0)
    } finally {
      await hub.close()
    }
  })
})
