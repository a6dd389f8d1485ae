/**
 * Drop-in capture of passport-http (Basic and Digest) logins over real HTTP, on
 * both supported Express/Passport pairs. Challenge-based strategies answer a
 * request that offered no credentials with a 401 challenge, exactly as they
 * answer a wrong password, so the reason (missing vs invalid credentials) and the
 * attempted login must be read from the Authorization header.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import type { Express } from 'express'
import type { Strategy } from 'passport'
import request from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { type Authenticator, type EventLog, harness, type Variant, variants } from './helpers/apps.js'

// passport-http ships no type declarations; describe the two constructors used here.
type Done = (err: unknown, user?: unknown, password?: string) => void
interface PassportHttp {
  BasicStrategy: new (
    options: { realm?: string; passReqToCallback?: boolean },
    verify: (userid: string, password: string, done: Done) => void,
  ) => Strategy
  DigestStrategy: new (options: { realm?: string }, secret: (username: string, done: Done) => void) => Strategy
}
const { BasicStrategy, DigestStrategy } = createRequire(import.meta.url)('passport-http') as PassportHttp

const PASSWORD = 'B4sic-Pa55word'
// passport-http keeps only the text up to a second colon; a wrong password with colons
// checks that the login is cut at the *first* colon and nothing after it is kept.
const COLON_PASSWORD = 'Gu3ss:with-colon:tail'
const BOB = { id: 'u-42', email: 'bob@example.com', username: 'bob', password: PASSWORD }
const REALM = 'Spec'

const verifyBasic = (userid: string, password: string, done: Done): void => {
  if (userid === BOB.username && password === BOB.password) done(null, BOB)
  else done(null, false)
}

const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** Waits for `n` events, drains the pipeline and checks that no extra event came. */
const exactly = async (h: { log: EventLog; sqreen: { close(): Promise<void> } }, n: number): Promise<AuthEvent[]> => {
  await h.log.waitFor(n)
  await h.sqreen.close()
  assert.equal(h.log.events.length, n, `expected exactly ${n} events: ${JSON.stringify(h.log.events)}`)
  return h.log.events
}

const routeProtected = (app: Express, passport: Authenticator, strategy: string): void => {
  app.get('/api/me', passport.authenticate(strategy, { session: false }), (req, res) => {
    res.json({ id: (req.user as typeof BOB).id })
  })
}

const basicSuite = (variant: Variant): void => {
  const basicApp = () =>
    harness(variant, ({ app, passport }) => {
      passport.use(new BasicStrategy({ realm: REALM }, verifyBasic))
      routeProtected(app, passport, 'basic')
    })

  it('a valid Authorization header emits login.succeeded with the user’s identity', async () => {
    const h = basicApp()
    const res = await request(h.app).get('/api/me').set('Authorization', basic('bob', PASSWORD))
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { id: 'u-42' })
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.succeeded')
    assert.equal(event?.source, 'passport')
    assert.equal(event?.strategy, 'basic')
    assert.deepEqual(event?.identity, { id: 'u-42', email: 'bob@example.com', username: 'bob' })
    assert.equal(event?.userKey, 'id:u-42')
    assert.equal(event?.loginKey, 'login:bob')
    assert.equal(event?.status, 200)
  })

  it('a wrong password is invalid_credentials with the login taken from the header', async () => {
    const h = basicApp()
    const res = await request(h.app).get('/api/me').set('Authorization', basic('Bob', 'guess:ed'))
    // The response is passport's, unchanged: a 401 challenge.
    assert.equal(res.status, 401)
    assert.equal(res.headers['www-authenticate'], `Basic realm="${REALM}"`)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.strategy, 'basic')
    assert.equal(event?.reason, 'invalid_credentials')
    assert.equal(event?.loginKey, 'login:bob')
    assert.deepEqual(event?.identity, { login: 'bob' })
    assert.equal(event?.status, 401)
  })

  it('a scheme passport-http accepts though it is not exactly "Basic" (xBasic) is read as passport-http reads it', async () => {
    // passport-http takes any scheme containing "Basic"; guesses sent so must count as guesses.
    const h = basicApp()
    const header = `xBasic ${Buffer.from('Bob:guess').toString('base64')}`
    const res = await request(h.app).get('/api/me').set('Authorization', header)
    assert.equal(res.status, 401)
    await request(h.app)
      .get('/api/me')
      .set('Authorization', `XBASIC ${Buffer.from(`bob:${PASSWORD}`).toString('base64')}`)
      .expect(200)
    const [failed, succeeded] = await exactly(h, 2)
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.loginKey, 'login:bob')
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.loginKey, 'login:bob')
  })

  it('a request without Authorization (the 401 challenge) is missing_credentials', async () => {
    const h = basicApp()
    const res = await request(h.app).get('/api/me')
    assert.equal(res.status, 401)
    assert.equal(res.headers['www-authenticate'], `Basic realm="${REALM}"`)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.reason, 'missing_credentials')
    assert.equal(event?.loginKey, undefined)
    assert.equal(event?.userKey, null)
  })

  it('a Bearer header sent to a Basic strategy is missing_credentials', async () => {
    const h = basicApp()
    const res = await request(h.app).get('/api/me').set('Authorization', 'Bearer abc.def.ghi')
    assert.equal(res.status, 401)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.reason, 'missing_credentials')
    assert.equal(event?.loginKey, undefined)
  })

  for (const [label, header] of [
    ['a scheme without credentials', 'Basic'],
    ['credentials without a colon', `Basic ${Buffer.from('bob').toString('base64')}`],
  ] as const) {
    it(`a malformed header (${label}) keeps passport-http’s 400 and is missing_credentials`, async () => {
      const h = basicApp()
      const res = await request(h.app).get('/api/me').set('Authorization', header)
      assert.equal(res.status, 400)
      const [event] = await exactly(h, 1)
      assert.equal(event?.type, 'login.failed')
      assert.equal(event?.reason, 'missing_credentials')
      assert.equal(event?.status, 400)
      assert.equal(event?.loginKey, undefined)
    })
  }

  it('only the user part of the header is read: no part of a password (even with colons) appears', async () => {
    const h = basicApp()
    await request(h.app).get('/api/me').set('Authorization', basic('bob', PASSWORD)).expect(200)
    await request(h.app).get('/api/me').set('Authorization', basic('bob', COLON_PASSWORD)).expect(401)
    await request(h.app).get('/api/me').set('Authorization', basic('', PASSWORD)).expect(401)
    const events = await exactly(h, 3)
    assert.deepEqual(
      events.map((e) => [e.type, e.loginKey]),
      [
        ['login.succeeded', 'login:bob'],
        ['login.failed', 'login:bob'],
        ['login.failed', undefined],
      ],
    )
    const serialised = JSON.stringify(events)
    for (const fragment of [PASSWORD, 'Gu3ss', 'with-colon', 'tail']) {
      assert.ok(!serialised.includes(fragment), `"${fragment}" leaked: ${serialised}`)
    }
    assert.ok(!h.logger.lines.join('\n').includes(PASSWORD))
  })

  it('a Basic strategy registered under a custom name is reported under that name', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use('api-basic', new BasicStrategy({ realm: REALM }, verifyBasic))
      routeProtected(app, passport, 'api-basic')
    })
    await request(h.app).get('/api/me').set('Authorization', basic('bob', 'nope')).expect(401)
    const [event] = await exactly(h, 1)
    assert.equal(event?.strategy, 'api-basic')
    assert.equal(event?.loginKey, 'login:bob')
  })
}

// --- Digest --------------------------------------------------------------------

const md5 = (s: string): string => createHash('md5').update(s).digest('hex')

/** An RFC 2617 Digest response without qop (the form passport-http checks when none is configured). */
const digest = (user: string, password: string, method: string, uri: string): string => {
  const nonce = 'dcd98b7102dd2f0e8b11d0f600bfb0c093'
  const response = md5(`${md5(`${user}:${REALM}:${password}`)}:${nonce}:${md5(`${method}:${uri}`)}`)
  return `Digest username="${user}", realm="${REALM}", nonce="${nonce}", uri="${uri}", response="${response}"`
}

const digestSuite = (variant: Variant): void => {
  const digestApp = () =>
    harness(variant, ({ app, passport }) => {
      passport.use(
        new DigestStrategy({ realm: REALM }, (username, done) => {
          if (username === BOB.username) done(null, BOB, BOB.password)
          else done(null, false)
        }),
      )
      routeProtected(app, passport, 'digest')
    })

  it('Digest: success, wrong password (login from the username parameter), and no header', async () => {
    const h = digestApp()
    await request(h.app)
      .get('/api/me')
      .set('Authorization', digest('bob', PASSWORD, 'GET', '/api/me'))
      .expect(200)
    await request(h.app)
      .get('/api/me')
      .set('Authorization', digest('bob', 'nope', 'GET', '/api/me'))
      .expect(401)
    const challenge = await request(h.app).get('/api/me').expect(401)
    assert.match(String(challenge.headers['www-authenticate']), /^Digest realm="Spec", nonce="/)
    const [succeeded, failed, missing] = await exactly(h, 3)
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.strategy, 'digest')
    assert.equal(succeeded?.userKey, 'id:u-42')
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.loginKey, 'login:bob')
    assert.equal(missing?.type, 'login.failed')
    assert.equal(missing?.reason, 'missing_credentials')
    assert.equal(missing?.loginKey, undefined)
  })

  it('Digest: a Basic header sent to a Digest strategy is missing_credentials', async () => {
    const h = digestApp()
    await request(h.app).get('/api/me').set('Authorization', basic('bob', PASSWORD)).expect(401)
    const [event] = await exactly(h, 1)
    assert.equal(event?.reason, 'missing_credentials')
    assert.ok(!JSON.stringify(event).includes(PASSWORD))
  })
}

for (const variant of variants) {
  describe(`capture: passport-http Basic (${variant.name})`, () => basicSuite(variant))
  describe(`capture: passport-http Digest (${variant.name})`, () => digestSuite(variant))
}
