/**
 * The hub's JSON API, sign-in and dashboard pages over real HTTP: no open default
 * (setup throws without a token or JWT config), 401 / the sign-in page without
 * credentials and no data in those answers, bearer token and JWT (jose, pinned
 * algorithm) access, the login form's cookie (HttpOnly, SameSite=Strict, Secure
 * behind TLS), logout that really ends the session; what the API returns (users
 * by score and by rise, a user's ledger, events, alerts, score history, counters);
 * escaping of attacker-chosen keys and identities; pages under helmet's default CSP.
 */
import assert from 'node:assert/strict'
import { createSecretKey, generateKeyPairSync } from 'node:crypto'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import request from 'supertest'
import { type HubOptions, RedisStore, SqreenAuthError, sqreenHub } from '../lib/index.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER } from '../lib/transport/wire.js'
import { MemoryLogger, variants } from './helpers/apps.js'
import {
  attackOn,
  ed25519,
  HS_SECRET,
  HUB_TOKEN,
  postBatch,
  type RunningHub,
  sampleEvent,
  signBatch,
  startHub,
} from './helpers/hub.js'
import { waitUntil } from './helpers/receivers.js'
import { RedisServer } from './helpers/redis.js'

const key = new TextEncoder().encode(HS_SECRET)
const BEARER = { Authorization: `Bearer ${HUB_TOKEN}` }

/** A brute force on `userKey` (12 failures), then `quiet` failures on another user. */
const seed = async (hub: RunningHub): Promise<void> => {
  const start = Date.now() - 60_000
  const attack = Array.from({ length: 12 }, (_, i) =>
    sampleEvent({ userKey: 'login:victim', loginKey: 'login:victim', at: new Date(start + i * 1000).toISOString() }),
  )
  const quiet = [sampleEvent({ userKey: 'id:quiet', identity: { id: 'quiet' }, loginKey: 'login:quiet' })]
  const custom = [attackOn('id:app-attacked', 'medium')]
  const res = await postBatch(hub.ingestUrl, await signBatch([...attack, ...quiet, ...custom], { key }))
  assert.equal(res.status, 200, JSON.stringify(res.body))
}

const cookieOf = (res: request.Response): string => {
  const header = res.headers['set-cookie'] as unknown as string[] | undefined
  const cookie = header?.find((c) => c.startsWith('sqreen_hub='))
  assert.ok(cookie, `no session cookie in ${JSON.stringify(header)}`)
  return cookie
}

const signIn = async (hub: RunningHub, token = HUB_TOKEN): Promise<string> => {
  const res = await request(hub.app).post('/hub/login').type('form').send({ token }).expect(303)
  assert.equal(res.headers.location, '/hub/')
  return cookieOf(res).split(';')[0] as string
}

describe('sqreenHub() options: no open default', () => {
  const fails = (options: unknown, code: string, message: RegExp): void => {
    assert.throws(
      () => sqreenHub(options as Partial<HubOptions>),
      (err: unknown) => {
        assert.ok(err instanceof SqreenAuthError, String(err))
        assert.equal(err.code, code)
        assert.match(err.message, message)
        return true
      },
    )
  }

  it('throws at setup without token or jwt, with a short token, without a key, or with a bad key', () => {
    fails({ key: HS_SECRET }, 'ERR_SQREEN_HUB_AUTH', /needs access control.*"token".*"jwt"/)
    fails(undefined, 'ERR_SQREEN_OPTIONS', /takes an options object/)
    fails({ key: HS_SECRET, token: 'short' }, 'ERR_SQREEN_HUB_AUTH', /at least 32 characters/)
    fails({ token: HUB_TOKEN }, 'ERR_SQREEN_HUB_KEY', /needs "key"/)
    fails({ key: 'too-short', token: HUB_TOKEN }, 'ERR_SQREEN_HUB_KEY', /9 bytes; it must have at least 32/)
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    fails(
      { key: rsa.publicKey, token: HUB_TOKEN },
      'ERR_SQREEN_HUB_KEY',
      /rsa key; expected an HS256 secret or an Ed25519 public key/,
    )
    fails({ key: HS_SECRET, jwt: { key: 'short' } }, 'ERR_SQREEN_HUB_AUTH', /"jwt.key"/)
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, tokn: 'x' },
      'ERR_SQREEN_UNKNOWN_OPTION',
      /"tokn"\. Did you mean "token"\?/,
    )
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, limits: { event: 10 } },
      'ERR_SQREEN_UNKNOWN_OPTION',
      /"limits.event".*Did you mean "events"\?/,
    )
    fails({ key: HS_SECRET, token: HUB_TOKEN, limits: { users: 0 } }, 'ERR_SQREEN_OPTION_TYPE', /"limits.users"/)
    fails({ key: HS_SECRET, token: HUB_TOKEN, slack: 'ftp://x' }, 'ERR_SQREEN_URL', /"slack"/)
    fails({ key: HS_SECRET, token: HUB_TOKEN, maxTokenAge: 'forever' }, 'ERR_SQREEN_OPTION_TYPE', /"maxTokenAge"/)
    fails({ key: HS_SECRET, token: HUB_TOKEN, bodyTimeout: 'soon' }, 'ERR_SQREEN_OPTION_TYPE', /"bodyTimeout"/)
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, reorderWindow: '2m' },
      'ERR_SQREEN_OPTION_TYPE',
      /"reorderWindow".*at most/,
    )
    fails({ key: HS_SECRET, token: HUB_TOKEN, reorderWindow: -1 }, 'ERR_SQREEN_OPTION_TYPE', /"reorderWindow"/)
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, reorderWindow: true as unknown as false },
      'ERR_SQREEN_OPTION_TYPE',
      /"reorderWindow"/,
    )
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, limits: { events: 20_001 } },
      'ERR_SQREEN_OPTION_TYPE',
      /"limits.events" must be at most 20000/,
    )
    fails(
      { key: HS_SECRET, token: HUB_TOKEN, limits: { body: 4096, inflight: 4095 } },
      'ERR_SQREEN_OPTION_TYPE',
      /"limits.inflight" must be at least "limits.body" \(4096 bytes\)/,
    )
    // One secret, one purpose: every forwarder holds the batch key.
    for (const key of [HUB_TOKEN, Buffer.from(HUB_TOKEN), createSecretKey(Buffer.from(HUB_TOKEN))]) {
      fails({ key, token: HUB_TOKEN }, 'ERR_SQREEN_HUB_AUTH', /"key" .*and "token" .*must differ/)
    }
    const keys = ed25519()
    for (const [key, jwtKey] of [
      [HS_SECRET, HS_SECRET],
      [Buffer.from(HS_SECRET), createSecretKey(Buffer.from(HS_SECRET))],
      [keys.publicKey, keys.publicPem],
      [keys.privateKey, keys.publicKey],
    ]) {
      fails(
        { key, token: HUB_TOKEN, jwt: { key: jwtKey } },
        'ERR_SQREEN_HUB_AUTH',
        /"key" .*and "jwt.key" .*must differ/,
      )
    }
    // Nor may the token be the JWT secret: whoever holds it could mint JWTs of any subject and lifetime.
    for (const jwtKey of [HUB_TOKEN, Buffer.from(HUB_TOKEN), createSecretKey(Buffer.from(HUB_TOKEN))]) {
      fails(
        { key: HS_SECRET, token: HUB_TOKEN, jwt: { key: jwtKey } },
        'ERR_SQREEN_HUB_AUTH',
        /"token" and "jwt.key" must differ/,
      )
    }
  })

  it('accepts a token, a JWT config, or both, and an Ed25519 public key as KeyObject or PEM', async () => {
    const keys = ed25519()
    for (const options of [
      { key: HS_SECRET, token: HUB_TOKEN },
      { key: keys.publicKey, jwt: { key: HS_SECRET } },
      { key: keys.publicPem, token: HUB_TOKEN, jwt: { key: ed25519().publicPem, issuer: 'sso' } },
    ]) {
      const hub = sqreenHub({ ...options, logger: new MemoryLogger() })
      assert.equal(typeof hub, 'function')
      assert.equal(typeof hub.use, 'function', 'an Express router')
      await hub.close()
    }
  })
})

describe('hub API', () => {
  it('401 without credentials or with a wrong token, and not a byte of data', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      for (const path of [
        '/hub/v1/users',
        '/hub/v1/users/login%3Avictim',
        '/hub/v1/alerts',
        '/hub/v1/stats',
        '/hub/v1/nope',
      ]) {
        for (const auth of [undefined, 'Bearer wrong', `Bearer ${HUB_TOKEN}x`, `Basic ${HUB_TOKEN}`, HUB_TOKEN]) {
          let req = request(hub.app).get(path)
          if (auth) req = req.set('Authorization', auth)
          const res = await req.expect(401)
          assert.deepEqual(Object.keys(res.body).sort(), ['error', 'message'])
          assert.equal(res.headers['www-authenticate'], 'Bearer realm="sqreen-auth hub"')
          assert.doesNotMatch(res.text, /victim|quiet|brute/)
        }
      }
    } finally {
      await hub.close()
    }
  })

  it('users by standing score and by 24-hour rise, a user with ledger, events, alerts and history, alerts, counters', async () => {
    const hub = await startHub()
    try {
      // Read once while empty: a later read must still see what arrives (regression).
      const empty = await request(hub.app).get('/hub/v1/users').set(BEARER).expect(200)
      assert.deepEqual(empty.body.users, [])
      await seed(hub)
      const byScore = await request(hub.app).get('/hub/v1/users').set(BEARER).expect(200).expect('Content-Type', /json/)
      assert.equal(byScore.body.sort, 'score')
      const keys = byScore.body.users.map((u: { userKey: string }) => u.userKey)
      assert.deepEqual(keys, ['login:victim', 'id:app-attacked', 'id:quiet'])
      const victim = byScore.body.users[0]
      const risk = await hub.hub.risk('login:victim')
      assert.equal(victim.score, risk.score)
      assert.equal(victim.rise24h, risk.rise24h)
      assert.equal(victim.failed, 12)
      assert.deepEqual(victim.identity, { login: 'victim' })

      const byRise = await request(hub.app).get('/hub/v1/users?sort=rise&limit=2').set(BEARER).expect(200)
      assert.equal(byRise.body.sort, 'rise')
      assert.equal(byRise.body.users.length, 2)
      assert.equal(byRise.body.users[0].userKey, 'login:victim')

      const detail = await request(hub.app)
        .get(`/hub/v1/users/${encodeURIComponent('login:victim')}`)
        .set(BEARER)
        .expect(200)
      assert.equal(detail.body.userKey, 'login:victim')
      assert.equal(detail.body.events.length, 12)
      assert.ok(detail.body.events[0].at >= detail.body.events[11].at, 'newest first')
      assert.ok(detail.body.entries.some((e: { detection: string }) => e.detection === 'brute_force'))
      assert.equal(detail.body.alerts.length, 1)
      assert.equal(detail.body.history.length, 48)
      assert.equal(detail.body.history.at(-1).score, risk.score, 'the sparkline ends at the engine score')
      assert.equal(detail.body.history[0].score, 0, 'and starts before the attack')

      await request(hub.app).get('/hub/v1/users/nobody').set(BEARER).expect(404)
      const alerts = await request(hub.app).get('/hub/v1/alerts').set(BEARER).expect(200)
      assert.equal(alerts.body.alerts.length, 1)
      assert.equal(alerts.body.alerts[0].userKey, 'login:victim')
      const stats = await request(hub.app).get('/hub/v1/stats').set(BEARER).expect(200)
      assert.equal(stats.body.counters['hub.events_in'], 14)
      assert.equal(stats.body.counters['hub.accepted'], 14)
      assert.equal(stats.body.users, 3)
      assert.equal(stats.body.alerts, 1)
      assert.equal(stats.headers['cache-control'], 'no-store')
    } finally {
      await hub.close()
    }
  })

  it('users page by offset: every user once, in order, with the total; a bad offset is refused', async () => {
    const hub = await startHub()
    try {
      // 7 users: pairs of equal scores (the order within a pair is by key, so pages are stable).
      const severities = ['low', 'low', 'medium', 'medium', 'high', 'high', 'critical'] as const
      const events = severities.map((severity, i) => attackOn(`id:user-${i}`, severity))
      const res = await postBatch(hub.ingestUrl, await signBatch(events, { key }))
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const whole = await request(hub.app).get('/hub/v1/users?limit=500').set(BEARER).expect(200)
      assert.equal(whole.body.total, 7)
      const order = whole.body.users.map((u: { userKey: string }) => u.userKey)
      assert.deepEqual(order, [
        'id:user-6',
        'id:user-4',
        'id:user-5',
        'id:user-2',
        'id:user-3',
        'id:user-0',
        'id:user-1',
      ])
      const paged: string[] = []
      for (let offset = 0; offset < 9; offset += 3) {
        const page = await request(hub.app).get(`/hub/v1/users?limit=3&offset=${offset}`).set(BEARER).expect(200)
        assert.equal(page.body.total, 7)
        assert.equal(page.body.offset, offset)
        assert.equal(page.body.limit, 3)
        paged.push(...page.body.users.map((u: { userKey: string }) => u.userKey))
      }
      assert.deepEqual(paged, order)
      const past = await request(hub.app).get('/hub/v1/users?offset=7').set(BEARER).expect(200)
      assert.deepEqual(past.body.users, [])
      for (const bad of ['-1', '1.5', 'x', '1e3', '']) {
        const refused = await request(hub.app).get(`/hub/v1/users?offset=${bad}`).set(BEARER).expect(400)
        assert.equal(refused.body.error, 'bad_offset')
      }
    } finally {
      await hub.close()
    }
  })

  it('while its Redis store is down, reads that need it answer 503 (no zero score cached, no user reported missing), then recover', async () => {
    const redis = await RedisServer.start()
    const store = new RedisStore({ url: redis.url, logger: new MemoryLogger(), maxReconnectDelay: 100 })
    let skew = 0
    const hub = await startHub({ store, clock: () => Date.now() + skew })
    try {
      await seed(hub)
      const before = await request(hub.app).get('/hub/v1/users').set(BEARER).expect(200)
      assert.equal(before.body.users[0]?.userKey, 'login:victim')
      await redis.stop()
      await waitUntil(() => store.stats().state === 'down', 'the store to notice the outage', 5000)
      // No batch is taken while the store holding the shared replay marks is away (the forwarder retries).
      const more = sampleEvent({ userKey: 'login:victim', loginKey: 'login:victim' })
      const refused = await postBatch(hub.ingestUrl, await signBatch([more], { key }))
      assert.equal(refused.status, 503)
      assert.equal(refused.body.error, 'store_unavailable')
      // A minute on, the cached numbers are due for a refresh.
      skew = 61_000
      await request(hub.app).get('/hub/v1/users').set(BEARER).expect(503, { error: 'store_unavailable' })
      await request(hub.app).get('/hub/v1/users/login%3Avictim').set(BEARER).expect(503, { error: 'store_unavailable' })
      assert.ok(hub.counter('store_errors') >= 2)
      await redis.start()
      await waitUntil(() => store.stats().state === 'up', 'the store to reconnect', 5000)
      // The restarted server kept nothing (no persistence here): the victim's numbers are now
      // read again, whatever they are, instead of a zero cached during the outage.
      const after = await request(hub.app).get('/hub/v1/users').set(BEARER).expect(200)
      const risk = await hub.hub.risk('login:victim')
      assert.equal(risk.unavailable, undefined)
      const victim = after.body.users.find((u: { userKey: string }) => u.userKey === 'login:victim')
      assert.equal(victim?.score ?? 0, risk.score, JSON.stringify(after.body.users))
      await request(hub.app).get('/hub/v1/users/login%3Avictim').set(BEARER).expect(200)
    } finally {
      await hub.close()
      await store.close()
      await redis.stop()
    }
  })

  it('JWT access (jose): the configured key and algorithm only, exp required, issuer and audience checked', async () => {
    const keys = ed25519()
    const hub = await startHub({ token: undefined, jwt: { key: keys.publicPem, issuer: 'sso', audience: 'hub' } })
    try {
      const now = Math.floor(Date.now() / 1000)
      const jwt = (
        claims: Record<string, unknown>,
        signWith: Parameters<SignJWT['sign']>[0] = keys.privateKey,
        alg = 'EdDSA',
      ) => new SignJWT(claims).setProtectedHeader({ alg }).sign(signWith)
      const good = await jwt({ sub: 'alice', iss: 'sso', aud: 'hub', exp: now + 60 })
      await request(hub.app).get('/hub/v1/stats').set('Authorization', `Bearer ${good}`).expect(200)
      const bad = [
        await jwt({ sub: 'alice', iss: 'sso', aud: 'hub' }),
        await jwt({ sub: 'alice', iss: 'sso', aud: 'hub', exp: now - 120 }),
        await jwt({ sub: 'alice', iss: 'other', aud: 'hub', exp: now + 60 }),
        await jwt({ sub: 'alice', iss: 'sso', aud: 'other', exp: now + 60 }),
        await jwt({ sub: 'alice', iss: 'sso', aud: 'hub', exp: now + 60 }, ed25519().privateKey),
        await jwt(
          { sub: 'alice', iss: 'sso', aud: 'hub', exp: now + 60 },
          new TextEncoder().encode(keys.publicPem),
          'HS256',
        ),
        HUB_TOKEN,
      ]
      for (const token of bad)
        await request(hub.app).get('/hub/v1/stats').set('Authorization', `Bearer ${token}`).expect(401)
      // A person signs in with the JWT; the page says who.
      const res = await request(hub.app).post('/hub/login').type('form').send({ token: good }).expect(303)
      const cookie = cookieOf(res).split(';')[0] as string
      const page = await request(hub.app).get('/hub/').set('Cookie', cookie).expect(200)
      assert.match(page.text, /signed in \(alice\)/)
    } finally {
      await hub.close()
    }
  })
})

describe('hub dashboard', () => {
  it('without a session: the sign-in page, never data; a wrong token is refused with the form again', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      for (const path of ['/hub/', '/hub/user?key=login%3Avictim', '/hub/user?key=nobody']) {
        const res = await request(hub.app).get(path).expect(303)
        assert.equal(res.headers.location, '/hub/login')
        assert.doesNotMatch(res.text, /victim|brute/)
      }
      const bogus = await request(hub.app)
        .get('/hub/')
        .set('Cookie', 'sqreen_hub=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')
        .expect(303)
      assert.equal(bogus.headers.location, '/hub/login')
      const form = await request(hub.app).get('/hub/login').expect(200).expect('Content-Type', /html/)
      assert.match(form.text, /<form method="post" action="\/hub\/login">/)
      assert.match(form.text, /name="token" type="password"/)
      const wrong = await request(hub.app).post('/hub/login').type('form').send({ token: 'nope' }).expect(401)
      assert.match(wrong.text, /That token is not valid/)
      assert.equal(wrong.headers['set-cookie'], undefined)
      assert.doesNotMatch(wrong.text, /victim/)
      assert.equal(hub.counter('hub.logins_failed'), 1)
      // Unknown paths under the mount fall through to the application (404 there).
      await request(hub.app).get('/hub/does-not-exist').expect(404)
    } finally {
      await hub.close()
    }
  })

  it('sign-in sets an HttpOnly, SameSite=Strict session cookie (Secure behind TLS); logout ends the session server-side', async () => {
    const hub = await startHub({}, { trustProxy: true })
    try {
      await seed(hub)
      const res = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
      const cookie = cookieOf(res)
      assert.match(cookie, /; Path=\/hub/)
      assert.match(cookie, /; HttpOnly/)
      assert.match(cookie, /; SameSite=Strict/)
      assert.doesNotMatch(cookie, /; Secure/, 'plain http: no Secure flag, or the browser would drop it')
      assert.doesNotMatch(cookie, new RegExp(HUB_TOKEN), 'the cookie is a session id, not the token')
      // A sign-in posted from another site is refused (Sec-Fetch-Site), token or not.
      const crossSite = await request(hub.app)
        .post('/hub/login')
        .set('Sec-Fetch-Site', 'cross-site')
        .type('form')
        .send({ token: HUB_TOKEN })
        .expect(403)
      assert.equal(crossSite.headers['set-cookie'], undefined)
      const secure = await request(hub.app)
        .post('/hub/login')
        .set('X-Forwarded-Proto', 'https')
        .type('form')
        .send({ token: HUB_TOKEN })
        .expect(303)
      assert.match(cookieOf(secure), /; Secure/)

      const session = cookie.split(';')[0] as string
      const page = await request(hub.app).get('/hub/').set('Cookie', session).expect(200)
      assert.match(page.text, /login:victim/)
      // The session also opens the JSON API (same origin; the API is read-only).
      await request(hub.app).get('/hub/v1/stats').set('Cookie', session).expect(200)
      await request(hub.app).get('/hub/login').set('Cookie', session).expect(303)

      const out = await request(hub.app).post('/hub/logout').set('Cookie', session).expect(303)
      assert.equal(out.headers.location, '/hub/login')
      assert.match(
        (out.headers['set-cookie'] as unknown as string[])[0] ?? '',
        /sqreen_hub=;.*Expires=Thu, 01 Jan 1970/,
      )
      // The old cookie, replayed, no longer works.
      await request(hub.app).get('/hub/').set('Cookie', session).expect(303)
      await request(hub.app).get('/hub/v1/stats').set('Cookie', session).expect(401)
    } finally {
      await hub.close()
    }
  })

  it('the overview says which alert is a possible takeover', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      // The victim's right password after the brute force: a takeover, alerted under the account.
      const takeover = sampleEvent({
        type: 'login.succeeded',
        reason: undefined,
        userKey: 'id:victim',
        identity: { id: 'victim' },
        loginKey: 'login:victim',
        at: new Date(Date.now() - 30_000).toISOString(),
      })
      const res = await postBatch(hub.ingestUrl, await signBatch([takeover], { key }))
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const alerts = await request(hub.app).get('/hub/v1/alerts').set(BEARER).expect(200)
      assert.deepEqual(
        alerts.body.alerts.map((a: { userKey: string; takeover?: boolean }) => [a.userKey, a.takeover === true]),
        [
          ['id:victim', true],
          ['login:victim', false],
        ],
      )
      const page = await request(hub.app)
        .get('/hub/')
        .set('Cookie', await signIn(hub))
        .expect(200)
      assert.match(
        page.text,
        /<strong class="takeover">Possible account takeover:<\/strong> <a href="[^"]*">id:victim<\/a>/,
      )
      assert.doesNotMatch(page.text, /Possible account takeover:<\/strong> <a href="[^"]*">login:victim/)
    } finally {
      await hub.close()
    }
  })

  it('overview and timeline show the riskiest users, sparklines, detections and alerts', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      const session = await signIn(hub)
      const page = await request(hub.app).get('/hub/').set('Cookie', session).expect(200)
      const riskiest = page.text.slice(
        page.text.indexOf('id="riskiest"'),
        page.text.indexOf('</table>', page.text.indexOf('id="riskiest"')),
      )
      assert.ok(riskiest.indexOf('login:victim') < riskiest.indexOf('id:quiet'), 'sorted by score')
      assert.match(page.text, /<svg class="spark"[^>]*role="img"[^>]*><title>score from 0 to [\d.]+/)
      assert.match(page.text, /Recent alerts[\s\S]*login:victim[\s\S]*risk rose by <strong>\+/)
      assert.match(page.text, /<span class="value">14<\/span><span class="label">Events in<\/span>/)

      const user = await request(hub.app).get('/hub/user?key=login%3Avictim').set('Cookie', session).expect(200)
      assert.match(user.text, /<h1 id="user-key">login:victim<\/h1>/)
      assert.match(user.text, /<ol class="timeline" id="timeline">/)
      assert.match(user.text, /Brute force<\/span> <strong>\+15<\/strong>/)
      assert.equal((user.text.match(/Login failed/g) ?? []).length, 12)
      assert.match(user.text, /<svg class="spark large"/)
      await request(hub.app).get('/hub/user?key=nobody').set('Cookie', session).expect(404)
    } finally {
      await hub.close()
    }
  })

  it('escapes attacker-chosen user keys, identities, strategies and user agents everywhere', async () => {
    const hub = await startHub()
    try {
      const evil = '<script>alert(1)</script>'
      const attr = '"><img src=x onerror=alert(2)>'
      const events = Array.from({ length: 11 }, () =>
        sampleEvent({
          userKey: `login:${evil}`,
          loginKey: `login:${evil}`,
          identity: { login: attr },
          strategy: `local${attr}`,
          userAgent: `UA ${evil}`,
        }),
      )
      assert.equal((await postBatch(hub.ingestUrl, await signBatch(events, { key }))).status, 200)
      const session = await signIn(hub)
      const pages = [
        (await request(hub.app).get('/hub/').set('Cookie', session).expect(200)).text,
        (
          await request(hub.app)
            .get(`/hub/user?key=${encodeURIComponent(`login:${evil}`)}`)
            .set('Cookie', session)
            .expect(200)
        ).text,
      ]
      for (const html of pages) {
        assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/)
        assert.doesNotMatch(html, /<script>alert/)
        assert.doesNotMatch(html, /<img src=x/)
        assert.equal((html.match(/<script\b/g) ?? []).length, 1, 'only our own script tag')
        // Inside real tags (escaped text has no "<"): no event handler, no inline style.
        const tags = html.match(/<[a-z][^>]*>/gi) ?? []
        assert.ok(tags.length > 20)
        for (const tag of tags) {
          assert.doesNotMatch(tag, /\son[a-z]+\s*=/i, `event handler attribute in ${tag}`)
          assert.doesNotMatch(tag, /\sstyle\s*=/i, `inline style in ${tag}`)
        }
      }
      // The link to the user is an encoded URL inside an escaped attribute.
      assert.match(pages[0] ?? '', /href="\/hub\/user\?key=login%3A%3Cscript%3Ealert\(1\)%3C%2Fscript%3E"/)
    } finally {
      await hub.close()
    }
  })

  it("under helmet()'s default CSP: scripts and styles are files from the router, no inline code; the hub's own CSP otherwise", async () => {
    const helmeted = await startHub({}, { helmet: true, mount: '/security' })
    const bare = await startHub()
    try {
      const session = cookieOf(
        await request(helmeted.app).post('/security/login').type('form').send({ token: HUB_TOKEN }).expect(303),
      ).split(';')[0] as string
      const page = await request(helmeted.app).get('/security/').set('Cookie', session).expect(200)
      const csp = String(page.headers['content-security-policy'])
      assert.match(csp, /script-src 'self'/)
      assert.match(csp, /script-src-attr 'none'/)
      assert.match(csp, /upgrade-insecure-requests/, "helmet's policy, not replaced by ours")
      assert.match(page.text, /<script src="\/security\/static\/hub\.js" defer><\/script>/)
      assert.match(page.text, /<link rel="stylesheet" href="\/security\/static\/hub\.css">/)
      assert.doesNotMatch(page.text, /<script>(?!<)/)
      assert.doesNotMatch(page.text, /<style/)
      const js = await request(helmeted.app).get('/security/static/hub.js').expect(200)
      assert.match(String(js.headers['content-type']), /javascript/)
      assert.match(js.text, /DOMParser/)
      const css = await request(helmeted.app).get('/security/static/hub.css').expect(200).expect('Content-Type', /css/)
      assert.match(css.text, /svg\.spark/)

      const own = await request(bare.app).get('/hub/login').expect(200)
      assert.match(String(own.headers['content-security-policy']), /default-src 'none'; script-src 'self'/)
      assert.equal(own.headers['x-frame-options'], 'DENY')
      assert.equal(own.headers['x-content-type-options'], 'nosniff')
    } finally {
      await helmeted.close()
      await bare.close()
    }
  })

  it('keeps at most limits.users users (least recently seen evicted) and limits.eventsPerUser events each', async () => {
    const hub = await startHub({ limits: { users: 3, eventsPerUser: 4 } })
    try {
      const at = (i: number) => new Date(Date.now() - 60_000 + i * 1000).toISOString()
      const events = [
        ...['u1', 'u2', 'u3'].map((u, i) => sampleEvent({ userKey: `login:${u}`, loginKey: `login:${u}`, at: at(i) })),
        // u1 is seen again, so u2 is now the least recently seen.
        ...Array.from({ length: 6 }, (_, i) =>
          sampleEvent({ userKey: 'login:u1', loginKey: 'login:u1', at: at(3 + i) }),
        ),
        sampleEvent({ userKey: 'login:u4', loginKey: 'login:u4', at: at(10) }),
      ]
      assert.equal((await postBatch(hub.ingestUrl, await signBatch(events, { key }))).status, 200)
      const res = await request(hub.app).get('/hub/v1/stats').set(BEARER).expect(200)
      assert.equal(res.body.users, 3)
      const users = await request(hub.app).get('/hub/v1/users?limit=10').set(BEARER).expect(200)
      assert.deepEqual(users.body.users.map((u: { userKey: string }) => u.userKey).sort(), [
        'login:u1',
        'login:u3',
        'login:u4',
      ])
      const u1 = await request(hub.app).get('/hub/v1/users/login%3Au1').set(BEARER).expect(200)
      assert.equal(u1.body.events.length, 4)
      assert.equal(u1.body.failed, 7, 'counts are kept beyond the recent events')
      // u2's ledger is still in the engine: the user page works, from the ledger alone.
      const u2 = await request(hub.app).get('/hub/v1/users/login%3Au2').set(BEARER).expect(200)
      assert.equal(u2.body.entries.length, 1)
      assert.deepEqual(u2.body.events, [])
    } finally {
      await hub.close()
    }
  })

  it('evicts one user even when every user was seen again, never the one just seen', async () => {
    const hub = await startHub({ limits: { users: 3, eventsPerUser: 4 } })
    try {
      const at = (i: number) => new Date(Date.now() - 60_000 + i * 1000).toISOString()
      const seen = (u: string, i: number) => sampleEvent({ userKey: `login:${u}`, loginKey: `login:${u}`, at: at(i) })
      const events = [...['u1', 'u2', 'u3', 'u3', 'u1', 'u2'].map((u, i) => seen(u, i)), seen('u4', 6), seen('u5', 7)]
      assert.equal((await postBatch(hub.ingestUrl, await signBatch(events, { key }))).status, 200)
      const res = await request(hub.app).get('/hub/v1/stats').set(BEARER).expect(200)
      assert.equal(res.body.users, 3)
      const users = await request(hub.app).get('/hub/v1/users?limit=10').set(BEARER).expect(200)
      const keys = users.body.users.map((u: { userKey: string }) => u.userKey)
      assert.ok(keys.includes('login:u4') && keys.includes('login:u5'), `the newest users are kept: ${keys}`)
    } finally {
      await hub.close()
    }
  })

  it('works mounted in an Express 4 app, and as the sqreen-auth/hub entry point of the build', async () => {
    const express4 = variants[1]!.express
    const hub = sqreenHub({ key: HS_SECRET, token: HUB_TOKEN, logger: new MemoryLogger() })
    const app = express4()
    app.use('/hub', hub)
    try {
      const batch = await signBatch([sampleEvent()], { key })
      await request(app)
        .post('/hub/v1/events')
        .set('Content-Type', BATCH_CONTENT_TYPE)
        .set(BATCH_SIGNATURE_HEADER, batch.signature)
        .send(batch.body)
        .expect(200)
      await request(app).get('/hub/v1/stats').set(BEARER).expect(200)
      const res = await request(app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
      await request(app)
        .get('/hub/')
        .set('Cookie', cookieOf(res).split(';')[0] as string)
        .expect(200)
      // A specifier in a variable: the build (dist/) exists when the specs run, not when they type-check.
      const entry: string = 'sqreen-auth/hub'
      const sub = (await import(entry)) as { sqreenHub?: unknown }
      assert.equal(typeof sub.sqreenHub, 'function')
    } finally {
      await hub.close()
    }
  })
})
