/**
 * Drop-in capture of passport-local logins over real HTTP, on both supported
 * Express/Passport pairs: the application registers its strategies as usual and
 * only adds `app.use(sqreen)`; every login outcome must come out as exactly one
 * event carrying the right strategy, identity, login, IP and status, and the
 * password must never show up in an event or a log line.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Express, NextFunction, Request, Response } from 'express'
import session from 'express-session'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, sqreenAuth } from '../lib/index.js'
import { type Authenticator, EventLog, harness, MemoryLogger, type Variant, variants } from './helpers/apps.js'

// Distinctive enough that finding it anywhere can only mean a leak.
const PASSWORD = 'Corr3ct-H0rse-Battery!'
const WRONG_PASSWORD = 'Wr0ng-Staple-Guess?'

interface User {
  id: number
  email: string
  username: string
  // Apps do keep secrets on their user objects; the automatic rule must ignore them.
  password: string
  role: string
}

const ALICE: User = { id: 7, email: 'alice@example.com', username: 'alice', password: PASSWORD, role: 'admin' }

const findUser = (login: string): User | undefined =>
  [ALICE].find((u) => u.username === login.toLowerCase() || u.email === login.toLowerCase())

type Done = (err: unknown, user?: Express.User | false, info?: { message: string }) => void

const verify = (login: string, password: string, done: Done): void => {
  const user = findUser(login)
  if (user && password === user.password) done(null, user)
  else done(null, false, { message: 'Incorrect username or password.' })
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// supertest connects over loopback; the server may see it as IPv4, mapped IPv4 or IPv6.
const LOOPBACK = /^(?:::ffff:)?127\.0\.0\.1$|^::1$/
const USER_AGENT = 'capture-local-spec/1.0'

/** The fields every automatically captured login event must carry. */
const assertPassportEvent = (event: AuthEvent, type: AuthEvent['type'], strategy: string): void => {
  assert.equal(event.type, type)
  assert.equal(event.source, 'passport')
  assert.equal(event.mode, 'automatic')
  assert.equal(event.strategy, strategy)
  assert.match(event.id, UUID)
  assert.ok(!Number.isNaN(Date.parse(event.at)), `"at" is not a date: ${event.at}`)
  assert.equal(event.userAgent, USER_AGENT)
}

const finalError = (err: Error, _req: Request, res: Response, _next: NextFunction): void => {
  // Answer errors here so Express does not print them to stderr during the run.
  res.status(500).json({ error: err.name })
}

/** Records `req.ip` as Express saw it, so the event's `ip` can be compared with it. */
const recordIps = (app: Express): string[] => {
  const ips: string[] = []
  app.use((req, _res, next) => {
    ips.push(req.ip ?? '')
    next()
  })
  return ips
}

const login = (app: Express, path: string, body: object) =>
  request(app).post(path).set('User-Agent', USER_AGENT).send(body)

/** Waits for `n` events, drains the pipeline and checks that no extra event came. */
const exactly = async (h: { log: EventLog; sqreen: { close(): Promise<void> } }, n: number): Promise<AuthEvent[]> => {
  await h.log.waitFor(n)
  await h.sqreen.close()
  assert.equal(h.log.events.length, n, `expected exactly ${n} events: ${JSON.stringify(h.log.events)}`)
  return h.log.events
}

const routeLocal = (app: Express, passport: Authenticator, path: string, strategy: string): void => {
  app.post(path, passport.authenticate(strategy, { session: false }), (req, res) => {
    res.json({ user: (req.user as User).id })
  })
}

const suite = (variant: Variant): void => {
  const localApp = () =>
    harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy(verify))
      routeLocal(app, passport, '/login', 'local')
      app.use(finalError)
    })

  it('a successful login emits one login.succeeded with the automatic identity, ip and status', async () => {
    let ips: string[] = []
    const h = harness(variant, ({ app, passport }) => {
      ips = recordIps(app)
      passport.use(new LocalStrategy(verify))
      routeLocal(app, passport, '/login', 'local')
    })
    const res = await login(h.app, '/login', { username: 'alice', password: PASSWORD })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: 7 })
    const [event] = await exactly(h, 1)
    assert.ok(event)
    assertPassportEvent(event, 'login.succeeded', 'local')
    // Only id, email and username are taken from the user object: not its password, not its role.
    assert.deepEqual(event.identity, { id: 7, email: 'alice@example.com', username: 'alice' })
    assert.equal(event.userKey, 'id:7')
    assert.equal(event.loginKey, 'login:alice')
    assert.equal(event.status, 200)
    assert.equal(event.reason, undefined)
    assert.deepEqual(event.attempts, [{ strategy: 'local', outcome: 'succeeded' }])
    assert.equal(ips.length, 1)
    assert.equal(event.ip, ips[0])
    assert.match(event.ip ?? '', LOOPBACK)
  })

  it('the ip honours the application’s trust proxy setting (it is req.ip)', async () => {
    const h = harness(variant, ({ app, passport }) => {
      app.set('trust proxy', true)
      passport.use(new LocalStrategy(verify))
      routeLocal(app, passport, '/login', 'local')
    })
    await login(h.app, '/login', { username: 'alice', password: PASSWORD }).set('X-Forwarded-For', '203.0.113.9')
    const [event] = await exactly(h, 1)
    assert.equal(event?.ip, '203.0.113.9')
  })

  it('the ip is kept when the client closes the connection with the response, and when the response ends late', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy(verify))
      app.post('/late', passport.authenticate('local', { session: false }), (_req, res) => {
        setTimeout(() => res.send('welcome'), 30)
      })
    })
    await login(h.app, '/late', { username: 'alice', password: PASSWORD }).set('Connection', 'close')
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.succeeded')
    assert.match(event?.ip ?? '', LOOPBACK, `got ${event?.ip}`)
  })

  it('the ip of a login on a mounted sub-app follows the trust proxy setting it inherits', async () => {
    for (const trust of [true, false]) {
      const h = harness(variant, ({ app, passport }) => {
        app.set('trust proxy', trust)
        passport.use(new LocalStrategy(verify))
        const sub = variant.express()
        sub.use(variant.express.urlencoded({ extended: false }))
        routeLocal(sub as unknown as typeof app, passport, '/login', 'local')
        app.use('/sub', sub)
      })
      await login(h.app, '/sub/login', { username: 'alice', password: PASSWORD }).set('X-Forwarded-For', '203.0.113.9')
      const [event] = await exactly(h, 1)
      if (trust) assert.equal(event?.ip, '203.0.113.9')
      else assert.match(event?.ip ?? '', LOOPBACK, `without trust proxy the header is ignored, got ${event?.ip}`)
    }
  })

  it('a wrong password emits login.failed / invalid_credentials with the attempted login', async () => {
    const h = localApp()
    const res = await login(h.app, '/login', { username: 'Alice', password: WRONG_PASSWORD })
    assert.equal(res.status, 401)
    const [event] = await exactly(h, 1)
    assert.ok(event)
    assertPassportEvent(event, 'login.failed', 'local')
    assert.equal(event.reason, 'invalid_credentials')
    // Automatic mode forwards the normalised login as found.
    assert.equal(event.loginKey, 'login:alice')
    assert.deepEqual(event.identity, { login: 'alice' })
    assert.equal(event.status, 401)
    assert.deepEqual(event.attempts, [{ strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' }])
  })

  it("reads the login passport-local checks: the body's when truthy, else the query's", async () => {
    const h = localApp()
    // A JSON `0` is falsy: passport-local checks alice (the query's), so must the event.
    await login(h.app, '/login?username=alice', { username: 0, password: WRONG_PASSWORD }).expect(401)
    // Spaces are truthy: passport-local checks "   ", nobody's login, not alice's.
    await login(h.app, '/login?username=alice', { username: '   ', password: WRONG_PASSWORD }).expect(401)
    // An array or an object is no answer to passport-local's lookup: it checks the query's.
    await login(h.app, '/login?username=alice', { username: ['x'], password: WRONG_PASSWORD }).expect(401)
    await login(h.app, '/login?username=alice', { username: {}, password: WRONG_PASSWORD }).expect(401)
    const [falsy, blank, array, object] = await exactly(h, 4)
    assert.equal(falsy?.loginKey, 'login:alice')
    assert.equal(blank?.loginKey, undefined)
    assert.notEqual(blank?.userKey, 'login:alice')
    assert.equal(array?.loginKey, 'login:alice')
    assert.equal(object?.loginKey, 'login:alice')
  })

  it('an unknown user is a failed login for the login that was typed', async () => {
    const h = localApp()
    const res = await login(h.app, '/login', { username: 'Mallory@Example.COM ', password: PASSWORD })
    assert.equal(res.status, 401)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.reason, 'invalid_credentials')
    assert.equal(event?.loginKey, 'login:mallory@example.com')
  })

  it('an empty form keeps passport’s 400 and is missing_credentials, with no login', async () => {
    const h = localApp()
    const res = await login(h.app, '/login', {})
    assert.equal(res.status, 400)
    const [event] = await exactly(h, 1)
    assert.ok(event)
    assertPassportEvent(event, 'login.failed', 'local')
    assert.equal(event.reason, 'missing_credentials')
    assert.equal(event.status, 400)
    assert.equal(event.loginKey, undefined)
    assert.deepEqual(event.identity, {})
    assert.equal(event.userKey, null)
  })

  it('a login without a password is missing_credentials but still names the login', async () => {
    const h = localApp()
    const res = await login(h.app, '/login', { username: 'alice' })
    assert.equal(res.status, 400)
    const [event] = await exactly(h, 1)
    assert.equal(event?.reason, 'missing_credentials')
    assert.equal(event?.loginKey, 'login:alice')
  })

  it('reads the login from a custom usernameField, not from "username"', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy({ usernameField: 'email' }, verify))
      routeLocal(app, passport, '/login', 'local')
    })
    // A decoy "username" field: the login must come from the configured field.
    const bad = await login(h.app, '/login', { email: 'Alice@Example.com', username: 'decoy', password: 'nope' })
    assert.equal(bad.status, 401)
    const ok = await login(h.app, '/login', { email: 'alice@example.com', username: 'decoy', password: PASSWORD })
    assert.equal(ok.status, 200)
    const [failed, succeeded] = await exactly(h, 2)
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.loginKey, 'login:alice@example.com')
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.loginKey, 'login:alice@example.com')
    assert.equal(succeeded?.userKey, 'id:7')
  })

  it('reads bracketed fields (user[email]) the way passport-local does', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy({ usernameField: 'user[email]', passwordField: 'user[password]' }, verify))
      routeLocal(app, passport, '/login', 'local')
    })
    const bad = await login(h.app, '/login', { user: { email: 'ALICE@example.com', password: 'nope' } })
    assert.equal(bad.status, 401)
    const ok = await login(h.app, '/login', { user: { email: 'alice@example.com', password: PASSWORD } })
    assert.equal(ok.status, 200)
    const [failed, succeeded] = await exactly(h, 2)
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.loginKey, 'login:alice@example.com')
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.loginKey, 'login:alice@example.com')
  })

  it('works with passReqToCallback: true (the verify still gets its request)', async () => {
    const tenants: unknown[] = []
    const h = harness(variant, ({ app, passport }) => {
      passport.use(
        new LocalStrategy({ passReqToCallback: true }, (req, username, password, done) => {
          tenants.push(req.body.tenant)
          verify(username, password, done)
        }),
      )
      routeLocal(app, passport, '/login', 'local')
    })
    const ok = await login(h.app, '/login', { username: 'alice', password: PASSWORD, tenant: 'acme' })
    assert.equal(ok.status, 200)
    const bad = await login(h.app, '/login', { username: 'alice', password: 'nope', tenant: 'globex' })
    assert.equal(bad.status, 401)
    assert.deepEqual(tenants, ['acme', 'globex'])
    const [succeeded, failed] = await exactly(h, 2)
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.deepEqual(succeeded?.identity, { id: 7, email: 'alice@example.com', username: 'alice' })
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.reason, 'invalid_credentials')
    assert.equal(failed?.loginKey, 'login:alice')
  })

  it('names the strategy by the name it was registered under', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use('admin', new LocalStrategy(verify))
      routeLocal(app, passport, '/admin/login', 'admin')
    })
    await login(h.app, '/admin/login', { username: 'alice', password: PASSWORD }).expect(200)
    await login(h.app, '/admin/login', { username: 'alice', password: 'nope' }).expect(401)
    const [succeeded, failed] = await exactly(h, 2)
    assert.equal(succeeded?.strategy, 'admin')
    assert.deepEqual(succeeded?.attempts, [{ strategy: 'admin', outcome: 'succeeded' }])
    assert.equal(failed?.strategy, 'admin')
    assert.deepEqual(failed?.attempts, [{ strategy: 'admin', outcome: 'failed', reason: 'invalid_credentials' }])
  })

  it('sees a strategy (and its route) set up before sqreenAuth() was created', async () => {
    // Built by hand: the harness creates the middleware before any strategy exists.
    const app = variant.express() as unknown as Express
    const passport = new variant.passport.Passport() as Authenticator
    app.use(variant.express.json())
    app.use(passport.initialize())
    passport.use(new LocalStrategy(verify))
    const loginMiddleware = passport.authenticate('local', { session: false })
    const log = new EventLog()
    const sqreen = sqreenAuth({ passport, onEvent: log.push, logger: new MemoryLogger() })
    app.use(sqreen)
    app.post('/login', loginMiddleware, (_req, res) => {
      res.json({ ok: true })
    })
    await login(app, '/login', { username: 'alice', password: PASSWORD }).expect(200)
    await login(app, '/login', { username: 'alice', password: 'nope' }).expect(401)
    const [succeeded, failed] = await exactly({ log, sqreen }, 2)
    assert.equal(succeeded?.type, 'login.succeeded')
    assert.equal(succeeded?.strategy, 'local')
    assert.equal(failed?.type, 'login.failed')
    assert.equal(failed?.loginKey, 'login:alice')
  })

  it('sees a strategy registered lazily, after the application already served requests', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy(verify))
      routeLocal(app, passport, '/login', 'local')
      routeLocal(app, passport, '/late/login', 'late')
      app.use(finalError)
    })
    await login(h.app, '/login', { username: 'alice', password: PASSWORD }).expect(200)
    await h.log.waitFor(1)
    // Before registration passport answers "Unknown authentication strategy": no login happened.
    await login(h.app, '/late/login', { username: 'alice', password: PASSWORD }).expect(500)
    h.passport.use('late', new LocalStrategy(verify))
    await login(h.app, '/late/login', { username: 'alice', password: 'nope' }).expect(401)
    await login(h.app, '/late/login', { username: 'alice', password: PASSWORD }).expect(200)
    const events = await exactly(h, 3)
    assert.deepEqual(
      events.map((e) => [e.type, e.strategy]),
      [
        ['login.succeeded', 'local'],
        ['login.failed', 'late'],
        ['login.succeeded', 'late'],
      ],
    )
  })

  it('does not mutate the application’s strategy object', async () => {
    const strategy = new LocalStrategy(verify)
    const ownBefore = Reflect.ownKeys(strategy)
    const proto = Object.getPrototypeOf(strategy)
    const h = harness(variant, ({ app, passport }) => {
      passport.use(strategy)
      routeLocal(app, passport, '/login', 'local')
    })
    await login(h.app, '/login', { username: 'alice', password: PASSWORD }).expect(200)
    await login(h.app, '/login', { username: 'alice', password: 'nope' }).expect(401)
    await exactly(h, 2)
    assert.deepEqual(Reflect.ownKeys(strategy), ownBefore)
    assert.equal(Object.getPrototypeOf(strategy), proto)
    assert.equal((h.passport as unknown as { _strategies: Record<string, unknown> })._strategies['local'], strategy)
  })

  it('never puts the password in an event or a log line, even when user code leaks it into errors', async () => {
    const passwordsSeen: string[] = []
    const log = new EventLog()
    const logger = new MemoryLogger()
    const h = harness(
      variant,
      ({ app, passport }) => {
        passport.use(
          new LocalStrategy((username, password, done) => {
            passwordsSeen.push(password)
            verify(username, password, done)
          }),
        )
        passport.use(
          'boom',
          new LocalStrategy((_username, password) => {
            // A careless verify: its error message carries the password.
            throw new Error(`database rejected query for password ${password}`)
          }),
        )
        routeLocal(app, passport, '/login', 'local')
        routeLocal(app, passport, '/boom/login', 'boom')
        app.use(finalError)
      },
      {
        logger,
        // Listener and login option that throw errors carrying the password, so the
        // library has something to log: only class names may reach the log.
        onEvent: (event) => {
          log.push(event)
          throw new Error(`listener failed on ${PASSWORD}`)
        },
        login: (req, strategy) => {
          if (strategy === 'boom') throw new TypeError(`cannot read login of ${String(req.body?.password)}`)
          return undefined
        },
      },
    )
    await login(h.app, '/login', { username: 'alice', password: PASSWORD }).expect(200)
    await login(h.app, '/login', { username: 'alice', password: WRONG_PASSWORD }).expect(401)
    await login(h.app, '/login', { password: PASSWORD }).expect(400)
    await login(h.app, '/login', { username: 'alice', password: `${PASSWORD}x` }).expect(401)
    await request(h.app).post('/boom/login').type('form').send({ username: 'alice', password: PASSWORD }).expect(500)
    await exactly({ log, sqreen: h.sqreen }, 5)
    assert.deepEqual(passwordsSeen, [PASSWORD, WRONG_PASSWORD, `${PASSWORD}x`])
    const types = log.events.map((e) => e.type)
    assert.deepEqual(types, ['login.succeeded', 'login.failed', 'login.failed', 'login.failed', 'login.error'])
    assert.deepEqual(log.events[4]?.error, { name: 'Error' })
    const serialised = JSON.stringify(log.events)
    for (const secret of [PASSWORD, WRONG_PASSWORD]) {
      assert.ok(!serialised.includes(secret), `an event carries a password: ${serialised}`)
    }
    // The throwing listener and login option were logged (so the search below is not vacuous)...
    const lines = logger.lines.join('\n')
    assert.match(lines, /listener_threw/)
    assert.match(lines, /login_option_threw/)
    // ...by class name only: no message, hence no password.
    assert.ok(!lines.includes(PASSWORD), `a log line carries the password: ${lines}`)
    assert.ok(!lines.includes('database rejected'), `a log line carries an error message: ${lines}`)
  })

  it('emits nothing for requests that do not log in', async () => {
    const h = harness(variant, ({ app, passport }) => {
      passport.use(new LocalStrategy(verify))
      app.get('/', (_req, res) => {
        res.send('home')
      })
      // passport.session() runs the session strategy on every request: never a login.
      app.use(session({ secret: 'capture-local-spec-session', resave: false, saveUninitialized: false }))
      app.get('/me', passport.session(), (req, res) => {
        res.status(req.user ? 200 : 401).end()
      })
      // A form page posting to the login route, and the route itself used with GET.
      app.get('/login', (_req, res) => {
        res.send('<form method="post"></form>')
      })
      routeLocal(app, passport, '/login', 'local')
      app.use((_req, res) => {
        res.status(404).send('not found')
      })
    })
    await request(h.app).get('/').expect(200)
    await request(h.app).get('/me').expect(401)
    await request(h.app).get('/login').expect(200)
    await request(h.app).post('/elsewhere').send({ username: 'alice', password: PASSWORD }).expect(404)
    // A sentinel login: requests are sequential, so had any earlier one produced an
    // event it would be ahead of this one.
    await login(h.app, '/login', { username: 'alice', password: 'nope' }).expect(401)
    const [event] = await exactly(h, 1)
    assert.equal(event?.type, 'login.failed')
    assert.equal(event?.strategy, 'local')
    assert.equal(h.sqreen.stats().counters['events'], 1)
  })
}

for (const variant of variants) {
  describe(`capture: passport-local (${variant.name})`, () => suite(variant))
}

for (const variant of variants) {
  describe(`capture.local: the event's time (${variant.name})`, () => {
    it("is when the strategy acted, not when the response ended (a slow page after the login), and authTrack's when it was called", async () => {
      let now = Date.parse('2026-03-01T10:00:00.000Z')
      const { app, sqreen, log } = harness(
        variant,
        ({ app, passport, sqreen }) => {
          passport.use(new LocalStrategy(verify))
          app.post('/login', passport.authenticate('local', { session: false }), (_req: Request, res: Response) => {
            // The page takes a while: the clock moves on before the response ends.
            now += 5_000
            setTimeout(() => res.send('welcome'), 20)
          })
          app.post('/manual', (req: Request, res: Response) => {
            sqreen.authTrack(req, false, { email: 'bob@example.com' })
            now += 5_000
            setTimeout(() => res.send('no'), 20)
          })
        },
        { clock: () => now },
      )
      try {
        // Each event before the next request: a slow page's event is emitted once its response
        // has ended, which capture notices up to a few tens of ms later, after the next login's.
        await request(app).post('/login').type('form').send({ username: 'alice', password: PASSWORD }).expect(200)
        await log.waitFor(1)
        await request(app).post('/login').type('form').send({ username: 'alice', password: WRONG_PASSWORD }).expect(401)
        await log.waitFor(2)
        await request(app).post('/manual').expect(200)
        const events = await log.exactly(3)
        assert.deepEqual(
          events.map((e) => [e.type, e.at]),
          [
            ['login.succeeded', '2026-03-01T10:00:00.000Z'],
            ['login.failed', '2026-03-01T10:00:05.000Z'],
            ['login.failed', '2026-03-01T10:00:05.000Z'],
          ],
        )
      } finally {
        await sqreen.close()
      }
    })
  })
}
