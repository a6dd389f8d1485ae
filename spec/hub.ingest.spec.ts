/**
 * `POST /v1/events` of a real hub router over HTTP, with batches crafted by hand:
 * what verifies (HS256, EdDSA) and what is refused (a tampered signature, `alg:
 * none`, HS256 signed with the Ed25519 public key, another key, a wrong `typ`,
 * expired, too long-lived, missing claims, a replayed `jti`); a batch with
 * malformed events keeps its good ones and says which were refused and why (no
 * prototype pollution); size limits; duplicates; overload; the same engine as
 * the middleware; alerts through the shared dispatcher.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import * as hubWire from '../lib/hub/ingest.js'
import { type AuthEvent, MemoryStore, type Store, type StoreOp } from '../lib/index.js'
import { BATCH_CONTENT_TYPE, BATCH_TYP, WIRE_VERSION } from '../lib/transport/wire.js'
import { variants } from './helpers/apps.js'
import { ed25519, HS_SECRET, postBatch, sampleEvent, signBatch, startHub } from './helpers/hub.js'
import { alertApp, failLogins, login, serve, USERS, WebhookReceiver, waitUntil } from './helpers/receivers.js'

const key = new TextEncoder().encode(HS_SECRET)

/** A brute force on one user: 12 failures from one IP, a second apart. */
const bruteForce = (userKey = 'login:victim', n = 12): AuthEvent[] => {
  const start = Date.now() - n * 1000
  return Array.from({ length: n }, (_, i) =>
    sampleEvent({ userKey, loginKey: userKey, at: new Date(start + i * 1000).toISOString() }),
  )
}

describe('hub ingest: signatures and claims', () => {
  it('the sender and the hub agree on the wire format', () => {
    assert.equal(hubWire.BATCH_CONTENT_TYPE, BATCH_CONTENT_TYPE)
    assert.equal(hubWire.BATCH_TYP, BATCH_TYP)
    assert.equal(hubWire.WIRE_VERSION, WIRE_VERSION)
  })

  it('HS256: a valid batch is accepted, counted and scored', async () => {
    const hub = await startHub()
    try {
      const events = bruteForce()
      const res = await postBatch(hub.ingestUrl, await signBatch(events, { key }))
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { accepted: 12, duplicates: 0, rejected: [] })
      assert.equal(hub.counter('hub.batches'), 1)
      assert.equal(hub.counter('hub.events_in'), 12)
      const risk = await hub.hub.risk('login:victim')
      assert.ok(risk.entries.some((e) => e.detection === 'brute_force'))
      assert.equal(hub.alerts.length, 1)
    } finally {
      await hub.close()
    }
  })

  it('refuses tampering, alg none, another key, a wrong typ, expired or long-lived batches and missing claims, scoring nothing', async () => {
    const hub = await startHub()
    try {
      const events = [sampleEvent()]
      const good = await signBatch(events, { key })
      const [h, p, s] = good.split('.') as [string, string, string]
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
      claims.events[0].userKey = 'login:someone-else'
      const tamperedPayload = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`
      const flipped = `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BA' : 'AA'}`
      const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: BATCH_TYP })).toString('base64url')
      const now = Math.floor(Date.now() / 1000)
      const cases: [string, string, number, string][] = [
        ['tampered payload', tamperedPayload, 401, 'bad_signature'],
        ['tampered signature', flipped, 401, 'bad_signature'],
        ['alg none, no signature', `${noneHeader}.${p}.`, 401, 'alg_not_allowed'],
        ['another secret', await signBatch(events, { key: `${HS_SECRET}-other` }), 401, 'bad_signature'],
        ['HS512 with the right secret', await signBatch(events, { key, alg: 'HS512' }), 401, 'alg_not_allowed'],
        ['a JWT of another kind (typ)', await signBatch(events, { key, typ: 'JWT' }), 401, 'bad_claim'],
        ['no typ', await signBatch(events, { key, typ: null }), 401, 'bad_claim'],
        ['expired', await signBatch(events, { key, iat: now - 600, exp: now - 120 }), 401, 'expired'],
        ['no exp', await signBatch(events, { key, exp: null }), 401, 'bad_claim'],
        ['no jti', await signBatch(events, { key, jti: null }), 401, 'bad_claim'],
        ['lives too long', await signBatch(events, { key, exp: now + 3600 }), 401, 'lifetime_too_long'],
        [
          'issued long ago (maxTokenAge)',
          await signBatch(events, { key, iat: now - 3600, exp: now + 60 }),
          401,
          'expired',
        ],
        ['wrong version', await signBatch(events, { key, extra: { v: 2 } }), 400, 'version'],
        ['no events', await signBatch(events, { key, extra: { events: 'nope' } }), 400, 'malformed'],
        ['not a JWS', 'hello', 400, 'malformed'],
        ['empty', '', 400, 'malformed'],
      ]
      for (const [what, token, status, error] of cases) {
        const res = await postBatch(hub.ingestUrl, token)
        assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`)
        assert.equal(res.body.error, error, what)
        assert.equal(res.body.accepted, undefined, `${what}: no counts`)
      }
      assert.equal(hub.counter('hub.accepted'), 0)
      assert.equal(hub.counter('hub.batches_refused'), cases.length)
      assert.equal((await hub.hub.risk('login:victim')).entries.length, 0)
      assert.equal((await hub.hub.risk('login:someone-else')).entries.length, 0)
    } finally {
      await hub.close()
    }
  })

  it('EdDSA hub: accepts the right Ed25519 key only; HS256 signed with the public key (alg confusion) is refused', async () => {
    const keys = ed25519()
    const hub = await startHub({ key: keys.publicKey })
    try {
      const events = [sampleEvent()]
      const ok = await postBatch(hub.ingestUrl, await signBatch(events, { key: keys.privateKey, alg: 'EdDSA' }))
      assert.equal(ok.status, 200)
      const confusions = [
        keys.publicPem,
        keys.publicKey.export({ format: 'der', type: 'spki' }),
        Buffer.from(keys.publicKey.export({ format: 'jwk' }).x as string, 'base64url'),
      ]
      for (const secret of confusions) {
        const res = await postBatch(
          hub.ingestUrl,
          await signBatch(events, { key: typeof secret === 'string' ? secret : new Uint8Array(secret) }),
        )
        assert.equal(res.status, 401)
        assert.equal(res.body.error, 'alg_not_allowed')
      }
      const other = ed25519()
      const wrong = await postBatch(hub.ingestUrl, await signBatch(events, { key: other.privateKey, alg: 'EdDSA' }))
      assert.equal(wrong.status, 401)
      assert.equal(wrong.body.error, 'bad_signature')
      assert.equal(hub.counter('hub.accepted'), 1)
    } finally {
      await hub.close()
    }
  })

  it('a replayed batch (same jti) is refused with 409 and not scored twice; the cache forgets after exp', async () => {
    const hub = await startHub({ maxTokenAge: '5m', clockTolerance: '1s' })
    try {
      const token = await signBatch(bruteForce('login:replayed', 3), { key })
      assert.equal((await postBatch(hub.ingestUrl, token)).status, 200)
      const again = await postBatch(hub.ingestUrl, token)
      assert.equal(again.status, 409)
      assert.equal(again.body.error, 'replayed')
      assert.equal(hub.counter('hub.accepted'), 3)
      assert.equal((await hub.hub.risk('login:replayed')).entries.length, 3)

      // Same jti, short lifetime: accepted, refused while live, refused as expired once past exp.
      const jti = randomUUID()
      const now = Math.floor(Date.now() / 1000)
      const short = await signBatch([sampleEvent()], { key, jti, exp: now + 1 })
      assert.equal((await postBatch(hub.ingestUrl, short)).status, 200)
      assert.equal((await postBatch(hub.ingestUrl, short)).status, 409)
      await new Promise((r) => setTimeout(r, 3100))
      const late = await postBatch(hub.ingestUrl, short)
      assert.equal(late.status, 401)
      assert.equal(late.body.error, 'expired')
    } finally {
      await hub.close()
    }
  })

  it('a full replay cache answers 503 + Retry-After instead of forgetting live ids', async () => {
    const hub = await startHub({ limits: { replay: 2 } })
    try {
      for (let i = 0; i < 2; i++)
        assert.equal((await postBatch(hub.ingestUrl, await signBatch([], { key }))).status, 200)
      const res = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key }))
      assert.equal(res.status, 503)
      assert.equal(res.headers.get('retry-after'), '1')
      assert.equal(hub.counter('hub.accepted'), 0)
    } finally {
      await hub.close()
    }
  })
})

describe('hub ingest: event validation', () => {
  it('keeps the good events of a batch, refuses the malformed ones by index and reason, pollutes nothing', async () => {
    const hub = await startHub()
    try {
      const polluted = JSON.parse(
        JSON.stringify(sampleEvent({ userKey: 'login:polluter' })).replace('{', '{"__proto__":{"polluted":"yes"},'),
      )
      const identityPolluted = sampleEvent({ userKey: 'login:polluter2' }) as any
      identityPolluted.identity = JSON.parse('{"__proto__": {"isAdmin": true}}')
      const constructorKey = sampleEvent({ identity: { constructor: 'x' } })
      const batch: unknown[] = [
        sampleEvent({ userKey: 'login:good-1', loginKey: 'login:good-1' }),
        {},
        sampleEvent({ type: 'login.hacked' }),
        polluted,
        identityPolluted,
        sampleEvent({ identity: { nested: { deep: 1 } } }),
        sampleEvent({ userAgent: 'x'.repeat(600) }),
        sampleEvent({ ip: 'not-an-ip' }),
        sampleEvent({ at: 'yesterday' }),
        sampleEvent({ at: new Date(Date.now() + 3_600_000).toISOString() }),
        sampleEvent({ at: new Date(Date.now() - 40 * 86_400_000).toISOString() }),
        sampleEvent({ isAdmin: true }),
        sampleEvent({ status: 42 }),
        sampleEvent({ attempts: [{ strategy: 'local', outcome: 'failed', extra: 1 }] }),
        sampleEvent({ type: 'custom', name: undefined }),
        sampleEvent({ userKey: undefined }),
        constructorKey,
        'a string',
        null,
        [1, 2],
        sampleEvent({
          type: 'custom',
          source: 'sdk',
          name: 'sql_injection',
          severity: 'high',
          userKey: 'id:good-2',
          identity: { id: 'good-2' },
          properties: { param: 'q', hits: 3, blocked: false },
        }),
      ]
      const res = await postBatch(hub.ingestUrl, await signBatch(batch, { key }))
      assert.equal(res.status, 422)
      assert.equal(res.body.accepted, 2)
      const reasons = Object.fromEntries(
        (res.body.rejected as { index: number; reason: string }[]).map((r) => [r.index, r.reason]),
      )
      assert.deepEqual(
        Object.keys(reasons).map(Number),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
      )
      assert.match(reasons[1] ?? '', /required|must be/)
      assert.match(reasons[2] ?? '', /type is not one of/)
      assert.match(reasons[3] ?? '', /unknown field "__proto__"/)
      assert.match(reasons[4] ?? '', /identity has a forbidden key/)
      assert.match(reasons[5] ?? '', /identity values must be strings or numbers/)
      assert.match(reasons[6] ?? '', /userAgent must have 1 to 512/)
      assert.match(reasons[7] ?? '', /ip must be an IPv4 or IPv6/)
      assert.match(reasons[8] ?? '', /at must be an ISO 8601/)
      assert.match(reasons[9] ?? '', /at is in the future/)
      assert.match(reasons[10] ?? '', /at is too old/)
      assert.match(reasons[11] ?? '', /unknown field "isAdmin"/)
      assert.match(reasons[12] ?? '', /status/)
      assert.match(reasons[13] ?? '', /attempts\[\]: unknown field "extra"/)
      assert.match(reasons[14] ?? '', /custom event needs a name/)
      assert.match(reasons[15] ?? '', /required/)
      assert.match(reasons[16] ?? '', /forbidden key/)
      assert.match(reasons[17] ?? '', /must be an object/)
      // Nothing reached any prototype.
      assert.equal(({} as any).polluted, undefined)
      assert.equal(({} as any).isAdmin, undefined)
      assert.equal(Object.hasOwn(Object.prototype, 'polluted'), false)
      // The good ones were scored; the refused ones left no trace.
      assert.equal((await hub.hub.risk('login:good-1')).entries.length, 1)
      assert.equal((await hub.hub.risk('id:good-2')).entries[0]?.detection, 'attack_high')
      assert.equal((await hub.hub.risk('login:polluter')).entries.length, 0)
      assert.equal(hub.counter('hub.accepted'), 2)
      assert.equal(hub.counter('hub.rejected'), 19)
      // Reasons name fields, never values, and the log says so once.
      assert.doesNotMatch(JSON.stringify(res.body), /not-an-ip|xxxxxxxx|login\.hacked/)
      assert.equal(hub.logger.lines.filter((l) => l.includes('hub_events_rejected')).length, 1)
    } finally {
      await hub.close()
    }
  })

  it('an event re-sent in a later batch (a retry after a lost answer) is a duplicate, not scored twice', async () => {
    const hub = await startHub()
    try {
      const event = sampleEvent({ userKey: 'login:dup', loginKey: 'login:dup' })
      assert.equal((await postBatch(hub.ingestUrl, await signBatch([event], { key }))).status, 200)
      const res = await postBatch(
        hub.ingestUrl,
        await signBatch([event, sampleEvent({ userKey: 'login:dup' })], { key }),
      )
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { accepted: 1, duplicates: 1, rejected: [] })
      assert.equal((await hub.hub.risk('login:dup')).entries.length, 2)
    } finally {
      await hub.close()
    }
  })

  it('size limits: an oversized body is 413 (by Content-Length and while streaming), too many events 413, wrong type 415', async () => {
    const hub = await startHub({ limits: { body: 4096, events: 3 } })
    try {
      const big = await signBatch(
        Array.from({ length: 5 }, () => sampleEvent({ userAgent: 'y'.repeat(500) })),
        { key },
      )
      assert.ok(big.length > 4096)
      const byLength = await postBatch(hub.ingestUrl, big)
      assert.equal(byLength.status, 413)
      assert.equal(byLength.body.error, 'too_large')
      // Chunked, no Content-Length: the hub stops reading past the limit.
      const chunked = await fetch(hub.ingestUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/jwt' },
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 8; i++) controller.enqueue(new TextEncoder().encode('a'.repeat(1024)))
            controller.close()
          },
        }),
        duplex: 'half',
      } as RequestInit)
      assert.equal(chunked.status, 413)
      const many = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent(), sampleEvent(), sampleEvent(), sampleEvent()], { key }),
      )
      assert.equal(many.status, 413)
      assert.equal(many.body.error, 'too_many_events')
      const wrongType = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key }), 'application/json')
      assert.equal(wrongType.status, 415)
      assert.equal(hub.counter('hub.accepted'), 0)
    } finally {
      await hub.close()
    }
  })

  it('overload: past limits.concurrency batches being scored, 503 + Retry-After (with a slow async store)', async () => {
    const memory = new MemoryStore()
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    // A remote-like store: answers asynchronously, after the gate opens.
    const slow: Store = {
      run: async (ops: readonly StoreOp[], now: number) => {
        await gate
        return memory.run(ops, now)
      },
      close: () => memory.close(),
    }
    const hub = await startHub({ store: slow, limits: { concurrency: 1 } })
    try {
      const first = postBatch(hub.ingestUrl, await signBatch([sampleEvent({ userKey: 'login:slow' })], { key }))
      await waitUntil(() => hub.counter('hub.batches') === 1, 'the first batch to be scoring')
      const second = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key }))
      assert.equal(second.status, 503)
      assert.equal(second.headers.get('retry-after'), '1')
      release()
      assert.equal((await first).status, 200)
      assert.equal((await hub.hub.risk('login:slow')).entries.length, 1)
    } finally {
      await hub.close()
      await memory.close()
    }
  })
})

describe('hub ingest: the same engine and alerts as the middleware', () => {
  it('a hub scores forwarded logins exactly as the app scores them in-process (one engine)', async () => {
    const hub = await startHub()
    const h = alertApp(variants[0]!, { forward: { url: hub.ingestUrl, key: HS_SECRET, flushInterval: 20 } })
    const app = await serve(h.app)
    const jane = USERS[0]!
    try {
      await failLogins(app.url, jane.username, 11, { ip: '198.51.100.7' })
      await login(app.url, jane.username, jane.password, { ip: '198.51.100.7' })
      await h.log.waitFor(12)
      await waitUntil(() => hub.counter('hub.accepted') === 12, 'the 12 events at the hub')
      const local = await h.sqreen.risk('id:1')
      const central = await hub.hub.risk('id:1')
      const summary = (r: typeof local) => r.entries.map((e) => [e.detection, e.points, e.at])
      assert.deepEqual(summary(central), summary(local))
      assert.equal(central.score, local.score)
      assert.deepEqual([...new Set(central.entries.map((e) => e.detection))].sort(), [
        'brute_force',
        'failure_burst',
        'success_after_brute_force',
        'wrong_password',
      ])
      // The failures of the attacked login were merged into the user who then logged in, at both ends.
      assert.equal((await hub.hub.risk(`login:${jane.username}`)).entries.length, 0)
    } finally {
      await h.sqreen.close()
      await app.close()
      await hub.close()
    }
  })

  it('alerts raised at the hub go out through the shared dispatcher (a verified webhook)', async () => {
    const secret = 'hub-webhook-secret-0123456789abcdef'
    const receiver = await WebhookReceiver.start(secret)
    const hub = await startHub({ webhook: { url: receiver.url, secret }, delivery: { baseDelay: 10, maxDelay: 50 } })
    try {
      await postBatch(hub.ingestUrl, await signBatch(bruteForce('login:central'), { key }))
      await receiver.waitFor(1)
      assert.equal(receiver.verified[0]?.userKey, 'login:central')
      assert.equal(receiver.verified[0]?.type, 'user.risk.increased')
      await waitUntil(() => hub.counter('deliveries.webhook') === 1, 'the delivery to be counted')
    } finally {
      await hub.close()
      await receiver.close()
    }
  })
})
