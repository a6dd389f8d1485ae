/**
 * The ways an application can consume passport's result (custom callbacks,
 * `session: false`, redirects, `failWithError`, errors from the verify function)
 * over real HTTP on both supported Express/Passport pairs. Two things are proven:
 * the outcome is captured whichever way the app answers, and observation changes
 * nothing the client can see: the same app built with and without the middleware
 * answers every request identically.
 */
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import type { Express, NextFunction, Request, Response } from 'express'
import session from 'express-session'
import type { Strategy } from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request, { type Response as TestResponse } from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { type Authenticator, type EventLog, harness, type Variant, variants } from './helpers/apps.js'

type Done = (err: unknown, user?: Express.User | false, info?: { message: string }) => void
const { BasicStrategy } = createRequire(import.meta.url)('passport-http') as {
  BasicStrategy: new (options: { realm?: string }, verify: (u: string, p: string, done: Done) => void) => Strategy
}

const PASSWORD = 'Cb-Pa55word-7731'
// Error messages written by careless apps: they must never reach an event or a log line.
const LEAKY_MESSAGE = `query failed for alice with ${PASSWORD}`

interface User {
  id: number
  email: string
  username: string
}
const CAROL: User = { id: 3, email: 'carol@example.com', username: 'carol' }

const verify = (username: string, password: string, done: Done): void => {
  if (username === CAROL.username && password === PASSWORD) done(null, CAROL)
  else done(null, false, { message: 'Incorrect username or password.' })
}

class DatabaseError extends Error {
  override name = 'DatabaseError'
  readonly code = 'ECONNREFUSED'
}

const errorHandler = (err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction): void => {
  // An app error handler that echoes the error: what the client sees must not change.
  res.status(err.status ?? 500).json({ name: err.name, message: err.message })
}

/**
 * The application under test: the same strategies and routes, whether or not the
 * middleware is there. Everything the routes answer is deterministic, so two
 * builds can be compared byte for byte.
 */
const routes = (app: Express, passport: Authenticator): void => {
  app.use(session({ secret: 'capture-callbacks-spec', resave: false, saveUninitialized: false }))
  app.use(passport.session())
  passport.serializeUser((user, done) => done(null, (user as User).id))
  passport.deserializeUser((id, done) => done(null, id === CAROL.id ? CAROL : false))
  passport.use(new LocalStrategy(verify))
  passport.use(
    'throws',
    new LocalStrategy(() => {
      throw new TypeError(LEAKY_MESSAGE)
    }),
  )
  passport.use(
    'dberr',
    new LocalStrategy((_u, _p, done) => {
      // An async infrastructure failure reported through done(err).
      setImmediate(() => done(new DatabaseError(LEAKY_MESSAGE)))
    }),
  )
  passport.use(new BasicStrategy({ realm: 'Spec' }, verify))

  // Custom callback: the app answers by itself and never calls req.logIn.
  const custom =
    (strategy: string) =>
    (req: Request, res: Response, next: NextFunction): void => {
      passport.authenticate(strategy, (err: unknown, user: User | false, info?: { message?: string }) => {
        if (err) return void res.status(503).json({ error: 'try again later' })
        if (!user) return void res.status(403).json({ error: info?.message ?? 'denied' })
        res.json({ welcome: user.username })
      })(req, res, next)
    }
  app.post('/custom', custom('local'))
  app.post('/custom/dberr', custom('dberr'))

  app.post('/stateless', passport.authenticate('local', { session: false }), (req, res) => {
    res.json({ id: (req.user as User).id })
  })
  app.post(
    '/redirects',
    passport.authenticate('local', { session: false, successRedirect: '/home', failureRedirect: '/login?failed=1' }),
  )
  app.post('/session', passport.authenticate('local', { successRedirect: '/home', failureRedirect: '/login' }))
  app.get('/home', (req, res) => {
    res.status(req.user ? 200 : 401).json({ user: (req.user as User | undefined)?.id ?? null })
  })
  app.post('/fwe', passport.authenticate('local', { session: false, failWithError: true }), (_req, res) => {
    res.json({ ok: true })
  })
  app.post('/throws', passport.authenticate('throws', { session: false }))
  app.post('/dberr', passport.authenticate('dberr', { session: false }))
  app.get('/api', passport.authenticate('basic', { session: false }), (_req, res) => {
    res.json({ ok: true })
  })
  app.use(errorHandler)
}

/** The same app as `harness` builds, minus `sqreenAuth()` and `app.use(sqreen)`. */
const bareApp = (variant: Variant, setup = routes): Express => {
  const app = variant.express() as unknown as Express
  const passport = new variant.passport.Passport() as Authenticator
  app.use(variant.express.urlencoded({ extended: false }))
  app.use(variant.express.json())
  app.use(passport.initialize())
  setup(app, passport)
  return app
}

const observedApp = (variant: Variant, setup = routes) => harness(variant, ({ app, passport }) => setup(app, passport))

/**
 * Errors left to Express's own final handler. In development it prints the
 * error's stack, which names the observing wrapper's frames (like any wrapper's);
 * the stack is not part of the response contract, so compare in production mode,
 * where the page is status, headers and a fixed body.
 */
const defaultHandlerRoutes = (app: Express, passport: Authenticator): void => {
  app.set('env', 'production')
  passport.use(new LocalStrategy(verify))
  passport.use(
    'throws',
    new LocalStrategy(() => {
      throw new TypeError(LEAKY_MESSAGE)
    }),
  )
  app.post('/fwe', passport.authenticate('local', { session: false, failWithError: true }))
  app.post('/throws', passport.authenticate('throws', { session: false }))
}

/** Waits for `n` events, drains the pipeline and checks that no extra event came. */
const exactly = async (h: { log: EventLog; sqreen: { close(): Promise<void> } }, n: number): Promise<AuthEvent[]> => {
  await h.log.waitFor(n)
  await h.sqreen.close()
  assert.equal(h.log.events.length, n, `expected exactly ${n} events: ${JSON.stringify(h.log.events)}`)
  return h.log.events
}

const GOOD = { username: 'carol', password: PASSWORD }
const BAD = { username: 'carol', password: 'wrong' }

const suite = (variant: Variant): void => {
  it('custom callback: success, failure and error are captured although the app answers itself', async () => {
    const h = observedApp(variant)
    const ok = await request(h.app).post('/custom').send(GOOD)
    assert.equal(ok.status, 200)
    assert.deepEqual(ok.body, { welcome: 'carol' })
    const denied = await request(h.app).post('/custom').send(BAD)
    assert.equal(denied.status, 403)
    assert.deepEqual(denied.body, { error: 'Incorrect username or password.' })
    const broken = await request(h.app).post('/custom/dberr').send(GOOD)
    assert.equal(broken.status, 503)
    const [succeeded, failed, errored] = await exactly(h, 3)
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.strategy, 'local')
    assert.deepEqual(succeeded?.identity, { id: 3, email: 'carol@example.com', username: 'carol' })
    assert.equal(succeeded?.status, 200)
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.loginKey, 'login:carol')
    // The status is the one the app chose in its callback, not passport's default.
    assert.equal(failed?.status, 403)
    assert.equal(errored?.type, 'login.error')
    assert.equal(errored?.strategy, 'dberr')
    assert.deepEqual(errored?.error, { name: 'DatabaseError', code: 'ECONNREFUSED' })
    assert.equal(errored?.status, 503)
    assert.equal(errored?.reason, undefined)
  })

  it('session: false: the login is captured and req.user is still set for the route', async () => {
    const h = observedApp(variant)
    const res = await request(h.app).post('/stateless').send(GOOD)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { id: 3 })
    assert.equal(res.headers['set-cookie'], undefined)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.succeeded')
    assert.equal(event?.userKey, 'id:3')
    assert.equal(event?.status, 200)
  })

  it('failureRedirect: the 302 stays a 302 to the same place and the failure is recorded', async () => {
    const h = observedApp(variant)
    const res = await request(h.app).post('/redirects').send(BAD)
    assert.equal(res.status, 302)
    assert.equal(res.headers['location'], '/login?failed=1')
    const empty = await request(h.app).post('/redirects').send({})
    assert.equal(empty.status, 302)
    const [failed, missing] = await exactly(h, 2)
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.status, 302)
    assert.equal(failed?.loginKey, 'login:carol')
    // With a failureRedirect passport does not answer 400, yet nothing was offered.
    assert.equal(missing?.type, 'login.failed')
    assert.equal(missing?.reason, 'missing_credentials')
  })

  it('successRedirect with a session: one login, and later requests restored from the session are not logins', async () => {
    const h = observedApp(variant)
    const res = await request(h.app).post('/session').send(GOOD)
    assert.equal(res.status, 302)
    assert.equal(res.headers['location'], '/home')
    const cookie = res.headers['set-cookie']
    assert.ok(cookie, 'the login set a session cookie')
    // The session strategy restores carol on every request: that is not a login.
    const home = await request(h.app).get('/home').set('Cookie', cookie)
    assert.equal(home.status, 200)
    assert.deepEqual(home.body, { user: 3 })
    await request(h.app).get('/home').set('Cookie', cookie).expect(200)
    // A sentinel failure, sequential after the session requests.
    await request(h.app).post('/session').send(BAD).expect(302)
    // Events are emitted once each response has ended: the success's ended after its session
    // was saved, and under load its event can come after the sentinel's. Found by type.
    const events = await exactly(h, 2)
    const succeeded = events.find((e) => e.type === 'login.succeeded')
    const failed = events.find((e) => e.type === 'login.failed')
    assert.equal(succeeded?.strategy, 'local')
    assert.equal(succeeded?.status, 302)
    assert.equal(failed?.strategy, 'local')
    assert.ok(h.log.events.every((e) => e.strategy !== 'session'))
  })

  it('failWithError: the app’s error handler answers unchanged and the failure is recorded', async () => {
    const h = observedApp(variant)
    const res = await request(h.app).post('/fwe').send(BAD)
    assert.equal(res.status, 401)
    assert.deepEqual(res.body, { name: 'AuthenticationError', message: 'Unauthorized' })
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.reason, 'invalid_credentials')
    assert.equal(event?.status, 401)
  })

  it('a verify that throws or calls done(err) is login.error with the class name, never the message', async () => {
    const h = observedApp(variant)
    const thrown = await request(h.app).post('/throws').send(GOOD)
    assert.equal(thrown.status, 500)
    // The app's own handler still sees the original error.
    assert.deepEqual(thrown.body, { name: 'TypeError', message: LEAKY_MESSAGE })
    const failed = await request(h.app).post('/dberr').send(GOOD)
    assert.equal(failed.status, 500)
    assert.deepEqual(failed.body, { name: 'DatabaseError', message: LEAKY_MESSAGE })
    const [first, second] = await exactly(h, 2)
    assert.equal(first?.type, 'login.error')
    assert.equal(first?.strategy, 'throws')
    assert.deepEqual(first?.error, { name: 'TypeError' })
    assert.equal(first?.status, 500)
    assert.equal(second?.type, 'login.error')
    assert.deepEqual(second?.error, { name: 'DatabaseError', code: 'ECONNREFUSED' })
    // An infrastructure problem is not a failed login: no reason.
    assert.equal(first?.reason, undefined)
    const everything = JSON.stringify(h.log.events) + h.logger.lines.join('\n')
    assert.ok(!everything.includes('query failed'), everything)
    assert.ok(!everything.includes(PASSWORD), everything)
  })

  it('every response is identical with and without the middleware (status, headers, body)', async () => {
    interface Case {
      readonly name: string
      readonly send: (app: Express) => Promise<TestResponse>
      /** The event the observed app must record for this request (`null`: none). */
      readonly event: AuthEvent['type'] | null
    }
    const post = (path: string, body: object) => (app: Express) => request(app).post(path).send(body)
    const cases: Case[] = [
      { name: 'custom callback, success', send: post('/custom', GOOD), event: 'login.succeeded' },
      { name: 'custom callback, failure', send: post('/custom', BAD), event: 'login.failed' },
      { name: 'custom callback, error', send: post('/custom/dberr', GOOD), event: 'login.error' },
      { name: 'session: false, success', send: post('/stateless', GOOD), event: 'login.succeeded' },
      { name: 'session: false, failure', send: post('/stateless', BAD), event: 'login.failed' },
      { name: 'empty form (400)', send: post('/stateless', {}), event: 'login.failed' },
      { name: 'successRedirect', send: post('/redirects', GOOD), event: 'login.succeeded' },
      { name: 'failureRedirect', send: post('/redirects', BAD), event: 'login.failed' },
      { name: 'session login', send: post('/session', GOOD), event: 'login.succeeded' },
      { name: 'failWithError', send: post('/fwe', BAD), event: 'login.failed' },
      { name: 'verify throws', send: post('/throws', GOOD), event: 'login.error' },
      { name: 'verify done(err)', send: post('/dberr', GOOD), event: 'login.error' },
      {
        name: 'form-encoded success',
        send: (app) => request(app).post('/stateless').type('form').send(GOOD),
        event: 'login.succeeded',
      },
      { name: 'basic challenge', send: (app) => request(app).get('/api'), event: 'login.failed' },
      {
        name: 'basic wrong password',
        send: (app) => request(app).get('/api').auth('carol', 'wrong'),
        event: 'login.failed',
      },
      {
        name: 'basic malformed',
        send: (app) => request(app).get('/api').set('Authorization', 'Basic'),
        event: 'login.failed',
      },
      {
        name: 'basic success',
        send: (app) => request(app).get('/api').auth('carol', PASSWORD),
        event: 'login.succeeded',
      },
      { name: 'not a login', send: (app) => request(app).get('/home'), event: null },
    ]

    // Session ids are random; compare the cookie's name and attributes, not its value.
    const normalise = (res: TestResponse) => {
      const headers: Record<string, unknown> = { ...res.headers }
      delete headers['date']
      delete headers['etag']
      const cookies = headers['set-cookie']
      if (Array.isArray(cookies)) headers['set-cookie'] = cookies.map((c: string) => c.replace(/=[^;]*/, '=<id>'))
      return { status: res.status, headers, body: res.text }
    }

    const bare = bareApp(variant)
    const h = observedApp(variant)
    const expected: AuthEvent['type'][] = []
    for (const c of cases) {
      const without = normalise(await c.send(bare))
      const withSqreen = normalise(await c.send(h.app))
      assert.deepEqual(withSqreen, without, `"${c.name}" answered differently with the middleware`)
      if (c.event) expected.push(c.event)
      // Wait per request, so an event that belongs to another request cannot make the counts match.
      await h.log.waitFor(expected.length)
      assert.equal(h.log.events.length, expected.length, `"${c.name}" recorded an unexpected event`)
    }
    const events = await exactly(h, expected.length)
    assert.deepEqual(
      events.map((e) => e.type),
      expected,
    )
  })

  it('errors left to Express’s final handler answer identically with and without the middleware', async (t) => {
    // The final handler prints each error to the console outside the "test" env; keep the run quiet.
    const quiet = t.mock.method(console, 'error', () => {})
    const bare = bareApp(variant, defaultHandlerRoutes)
    const h = observedApp(variant, defaultHandlerRoutes)
    for (const [path, status] of [
      ['/fwe', 401],
      ['/throws', 500],
    ] as const) {
      const without = await request(bare).post(path).send(BAD)
      const withSqreen = await request(h.app).post(path).send(BAD)
      assert.equal(withSqreen.status, status)
      assert.equal(withSqreen.text, without.text)
      const { date: _d1, ...headers } = withSqreen.headers
      const { date: _d2, ...expectedHeaders } = without.headers
      assert.deepEqual(headers, expectedHeaders)
    }
    const [failed, errored] = await exactly(h, 2)
    // Express logs each of the four errors on a deferred tick; wait for them while still muted.
    for (let i = 0; i < 100 && quiet.mock.callCount() < 4; i++) await new Promise((r) => setTimeout(r, 5))
    assert.equal(quiet.mock.callCount(), 4)
    assert.equal(failed?.type, 'login.failed')
    assert.equal(errored?.type, 'login.error')
  })
}

for (const variant of variants) {
  describe(`capture: callbacks and redirects (${variant.name})`, () => suite(variant))
}
