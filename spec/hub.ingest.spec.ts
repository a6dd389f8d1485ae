/**
 * `POST /v1/events` of a real hub router over HTTP, with batches crafted by hand
 * (wire format v2: a JSON body, its detached JWS with an unencoded payload in
 * `Sqreen-Signature`): what verifies (HS256, EdDSA) and what is refused (a tampered
 * body, header or signature, `alg: none`, HS256 signed with the Ed25519 public key,
 * another key, a wrong `typ`, an encoded-payload JWS, expired, too long-lived,
 * missing claims, a replayed `jti`, an unreadable body); a batch with
 * malformed events keeps its good ones and says which were refused and why (no
 * prototype pollution); size limits; duplicates; overload; the same engine as
 * the middleware; alerts through the shared dispatcher.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import * as hubWire from '../lib/hub/ingest.js'
import { type AuthEvent, MemoryStore, type Store, type StoreOp } from '../lib/index.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, BATCH_TYP, WIRE_VERSION } from '../lib/transport/wire.js'
import { variants } from './helpers/apps.js'
import {
  ed25519,
  HS_SECRET,
  postBatch,
  type SignedBatch,
  sampleEvent,
  signBatch,
  startHub,
  unsignedBatch,
} from './helpers/hub.js'
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
    assert.equal(hubWire.BATCH_SIGNATURE_HEADER, BATCH_SIGNATURE_HEADER)
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

  it('refuses tampering, alg none, another key, a wrong typ, an encoded payload, expired or long-lived batches, missing claims and unreadable bodies, scoring nothing', async () => {
    const hub = await startHub()
    try {
      const events = [sampleEvent()]
      const good = await signBatch(events, { key })
      const body = String(good.body)
      const [h, , s] = good.signature.split('.') as [string, string, string]
      const claims = JSON.parse(body)
      claims.events[0].userKey = 'login:someone-else'
      const header = JSON.parse(Buffer.from(h, 'base64url').toString())
      const reheader = (changes: Record<string, unknown>) =>
        `${Buffer.from(JSON.stringify({ ...header, ...changes })).toString('base64url')}..${s}`
      const now = Math.floor(Date.now() / 1000)
      const sign = (options: Omit<Parameters<typeof signBatch>[1], 'key'>) => signBatch(events, { key, ...options })
      // The same batch as a v1-style attached JWS (payload in the header) and as a v1 JWT body.
      const attached = `${h}.${Buffer.from(body).toString('base64url')}.${s}`
      const notUtf8 = Buffer.concat([
        Buffer.from(`${body.slice(0, -1)},"note":"`),
        Buffer.from([0xff]),
        Buffer.from('"}'),
      ])
      const cases: [string, SignedBatch, number, string, RegExp?][] = [
        ['tampered body', { body: JSON.stringify(claims), signature: good.signature }, 401, 'bad_signature'],
        ['one byte more of body (whitespace)', { body: `${body} `, signature: good.signature }, 401, 'bad_signature'],
        ['tampered header (typ)', { body, signature: reheader({ typ: 'other' }) }, 401, 'bad_signature'],
        [
          'tampered signature',
          { body, signature: `${h}..${s.slice(0, -2)}${s.endsWith('AA') ? 'BA' : 'AA'}` },
          401,
          'bad_signature',
        ],
        ['alg none, no signature', unsignedBatch(events), 401, 'alg_not_allowed'],
        ['another secret', await signBatch(events, { key: `${HS_SECRET}-other` }), 401, 'bad_signature'],
        ['HS512 with the right secret', await sign({ alg: 'HS512' }), 401, 'alg_not_allowed'],
        ['a JWS of another kind (typ)', await sign({ typ: 'JWT' }), 401, 'bad_claim', /"typ"/],
        ['the v1 typ', await sign({ typ: 'sqreen-auth-batch+jwt' }), 401, 'bad_claim', /"typ"/],
        ['no typ', await sign({ typ: null }), 401, 'bad_claim', /"typ"/],
        // No b64: false (jose signs base64url(body)): a hub that fell back to it would accept.
        ['encoded payload', await sign({ header: { b64: undefined, crit: undefined } }), 401, 'bad_claim', /b64/],
        ['b64: false not critical', await sign({ header: { crit: undefined } }), 401, 'bad_claim', /b64/],
        ['b64: true, critical', await sign({ header: { b64: true } }), 401, 'bad_claim', /b64/],
        [
          'an unknown critical extension',
          await sign({ header: { crit: ['b64', 'x-ext'], 'x-ext': 1 }, crit: { 'x-ext': true } }),
          401,
          'bad_claim',
          /critical extension/,
        ],
        ['attached JWS (payload in the header)', { body, signature: attached }, 400, 'malformed'],
        ['a v1 JWT as the body, no signature header', { body: attached }, 400, 'malformed'],
        ['no signature header', { body }, 400, 'malformed'],
        // Young enough for maxTokenAge: only exp says it is over.
        ['expired', await sign({ iat: now - 200, exp: now - 100 }), 401, 'expired', /\(exp\)/],
        ['no exp', await sign({ exp: null }), 401, 'bad_claim', /"exp"/],
        ['exp not a number', await sign({ extra: { exp: String(now + 60) } }), 401, 'bad_claim', /"exp"/],
        ['no iat', await sign({ iat: null }), 401, 'bad_claim', /"iat"/],
        ['not before (nbf) in the future', await sign({ extra: { nbf: now + 600 } }), 401, 'bad_claim', /"nbf"/],
        ['issued in the future', await sign({ iat: now + 600, exp: now + 660 }), 401, 'bad_claim', /"iat"/],
        ['no jti', await sign({ jti: null }), 401, 'bad_claim', /"jti"/],
        ['jti too long', await sign({ jti: 'j'.repeat(129) }), 401, 'bad_claim', /"jti"/],
        ['lives too long', await sign({ exp: now + 3600 }), 401, 'lifetime_too_long'],
        ['issued long ago (maxTokenAge)', await sign({ iat: now - 3600, exp: now + 60 }), 401, 'expired', /\(iat\)/],
        ['wrong version', await sign({ extra: { v: 1 } }), 400, 'version'],
        ['no version', await sign({ extra: { v: undefined } }), 400, 'version'],
        ['no events', await sign({ extra: { events: 'nope' } }), 400, 'malformed'],
        ['signed, not JSON', await sign({ body: 'hello' }), 400, 'malformed'],
        ['signed, a JSON array', await sign({ body: '[1,2]' }), 400, 'malformed'],
        // Valid JSON once 0xff is read as U+FFFD, as a lenient decoder would: refused all the same.
        ['signed, not UTF-8', await sign({ body: notUtf8 }), 400, 'malformed', /UTF-8/],
        ['empty', { body: '' }, 400, 'malformed'],
      ]
      for (const [what, batch, status, error, message] of cases) {
        const res = await postBatch(hub.ingestUrl, batch)
        assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`)
        assert.equal(res.body.error, error, what)
        if (message) assert.match(res.body.message, message, what)
        assert.equal(res.body.accepted, undefined, `${what}: no counts`)
      }
      assert.equal(hub.counter('hub.accepted'), 0)
      assert.equal(hub.counter('hub.batches_refused'), cases.length)
      assert.equal((await hub.hub.risk('login:victim')).entries.length, 0)
      assert.equal((await hub.hub.risk('login:someone-else')).entries.length, 0)
      // The untouched batch still verifies: the refusals above are about what was changed.
      assert.equal((await postBatch(hub.ingestUrl, good)).status, 200)
      // A byte-order mark before the JSON is read past, as a UTF-8 decoder does (the bytes are signed as sent).
      const fresh = await sign({})
      const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(fresh.body)])
      assert.equal((await postBatch(hub.ingestUrl, await sign({ body: withBom }))).status, 200)
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
      assert.ok(big.body.length > 4096)
      const byLength = await postBatch(hub.ingestUrl, big)
      assert.equal(byLength.status, 413)
      assert.equal(byLength.body.error, 'too_large')
      // Chunked, no Content-Length: the hub stops reading past the limit.
      const chunked = await fetch(hub.ingestUrl, {
        method: 'POST',
        headers: { 'content-type': BATCH_CONTENT_TYPE, [BATCH_SIGNATURE_HEADER]: big.signature },
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
      // The v1 content type, or none that says JSON: refused before the body is read.
      for (const type of ['application/jwt', 'text/plain', 'application/x-www-form-urlencoded']) {
        const wrongType = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key }), type)
        assert.equal(wrongType.status, 415, type)
        assert.equal(wrongType.body.error, 'content_type', type)
      }
      assert.equal(hub.counter('hub.accepted'), 0)
    } finally {
      await hub.close()
    }
  })

  it('behind an application-wide body parser: express.raw() and a default express.json() leave the bytes (accepted); a parser of every type loses them (500, logged, no hang)', async () => {
    for (const parser of ['raw', 'json'] as const) {
      const kept = await startHub({}, { parser })
      try {
        const res = await postBatch(kept.ingestUrl, await signBatch([sampleEvent()], { key }))
        assert.equal(res.status, 200, `${parser}: ${JSON.stringify(res.body)}`)
        assert.equal(kept.counter('hub.accepted'), 1)
      } finally {
        await kept.close()
      }
    }
    const json = await startHub({}, { parser: 'json-any' })
    try {
      for (let i = 0; i < 2; i++) {
        const res = await postBatch(json.ingestUrl, await signBatch([sampleEvent()], { key }))
        // A 5xx, so forwarders keep their events until the hub is mounted before the parser.
        assert.equal(res.status, 500, JSON.stringify(res.body))
        assert.equal(res.body.error, 'body_consumed')
      }
      assert.equal(json.counter('hub.accepted'), 0)
      const logged = json.logger.lines.filter((l) => l.includes('hub_body_consumed'))
      assert.equal(logged.length, 1, 'logged once')
      assert.match(logged[0] ?? '', /mount the hub before it/)
    } finally {
      await json.close()
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
