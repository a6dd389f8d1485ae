import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Server } from 'node:http'
import { describe, it } from 'node:test'
import type { Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type SqreenAuth, sqreenAuth } from '../lib/index.js'
import { type Authenticator, EventLog, harness, MemoryLogger, type Variant, variants } from './helpers/apps.js'

const N = 50

interface User {
  id: string
  username: string
  password: string
}

const users: User[] = Array.from({ length: N }, (_, i) => ({ id: `u-${i}`, username: `user${i}`, password: `pw-${i}` }))
// Two in three log in with their password, the others with a wrong one.
const succeeds = (i: number): boolean => i % 3 !== 0
const byName = new Map(users.map((u) => [u.username, u]))

/**
 * A local strategy whose verify answers after a random 1-30 ms, so the 50
 * requests' verify callbacks finish in an order unrelated to their start. It
 * records both orders, so the test can prove the requests really interleaved.
 */
const makeStrategy = () => {
  const started: string[] = []
  const finished: string[] = []
  const strategy = new LocalStrategy((username, password, done) => {
    started.push(username)
    setTimeout(
      () => {
        finished.push(username)
        const user = byName.get(username)
        done(null, user !== undefined && user.password === password ? user : false)
      },
      1 + Math.floor(Math.random() * 30),
    )
  })
  return { strategy, started, finished }
}

/** Every own property of the developer's strategy object, with its value. */
const ownProperties = (o: object): [PropertyKey, unknown][] =>
  Reflect.ownKeys(o).map((k) => [k, (o as Record<PropertyKey, unknown>)[k]])

const answer = (req: Request, res: Response) => res.json({ username: (req.user as User).username })

interface Built {
  server: Server
  sqreen: SqreenAuth
  log: EventLog
}

const listen = async (app: { listen(port: number): Server }): Promise<Server> => {
  const server = app.listen(0)
  await once(server, 'listening')
  return server
}

const shutdown = async ({ server, sqreen }: Built): Promise<void> => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await sqreen.close()
}

/** Fires the 50 logins at once and checks each response and each event against its own request. */
const fiftyLogins = async ({ server, log }: Built, recorded: { started: string[]; finished: string[] }) => {
  const responses = await Promise.all(
    users.map((u, i) =>
      request(server)
        .post('/login')
        .type('form')
        .send({ username: u.username, password: succeeds(i) ? u.password : 'wrong' })
        // A request answered on another request's response would leave this one hanging.
        .timeout(5000),
    ),
  )
  responses.forEach((res, i) => {
    const u = users[i]!
    if (succeeds(i)) {
      assert.equal(res.status, 200, `${u.username}: ${res.status}`)
      // Observation must not deliver another request's verify result to this one.
      assert.deepEqual(res.body, { username: u.username })
    } else {
      assert.equal(res.status, 401, `${u.username}: ${res.status}`)
    }
  })
  // The verify callbacks really overlapped and finished out of order; otherwise the
  // test would not exercise a shared strategy object's action functions at all.
  assert.equal(recorded.started.length, N)
  assert.notDeepEqual(recorded.finished, recorded.started)

  await log.waitFor(N)
  const events = await log.settle()
  assert.equal(events.length, N, `exactly ${N} events`)

  const byLoginKey = new Map(events.map((e) => [e.loginKey, e]))
  assert.equal(byLoginKey.size, N, 'one event per request')
  users.forEach((u, i) => {
    const event = byLoginKey.get(`login:${u.username}`)
    assert.ok(event, `no event for ${u.username}`)
    assert.equal(event.strategy, 'local')
    if (succeeds(i)) {
      assert.equal(event.type, 'login.succeeded', u.username)
      // The user on the event is this request's user, not a neighbour's.
      assert.equal(event.userKey, `id:${u.id}`)
      assert.deepEqual(event.identity, { id: u.id, username: u.username })
      assert.equal(event.status, 200)
    } else {
      assert.equal(event.type, 'login.failed', u.username)
      assert.equal(event.reason, 'invalid_credentials')
      assert.deepEqual(event.identity, { login: u.username })
      assert.equal(event.status, 401)
    }
    assert.deepEqual(event.attempts, [
      {
        strategy: 'local',
        outcome: succeeds(i) ? 'succeeded' : 'failed',
        ...(succeeds(i) ? {} : { reason: 'invalid_credentials' }),
      },
    ])
  })
}

/**
 * Serves the app, runs the 50 logins and checks that the developer's strategy object
 * was not mutated (plain passport would leave success/fail/... on a shared object).
 */
const loginsLeaveStrategyIntact = async (
  built: { app: Parameters<typeof listen>[0]; sqreen: SqreenAuth; log: EventLog },
  recorded: ReturnType<typeof makeStrategy>,
  before: ReturnType<typeof ownProperties>,
): Promise<void> => {
  const running = { server: await listen(built.app), sqreen: built.sqreen, log: built.log }
  try {
    await fiftyLogins(running, recorded)
    assert.deepEqual(ownProperties(recorded.strategy), before, 'the strategy object was mutated')
  } finally {
    await shutdown(running)
  }
}

for (const variant of variants) {
  describe(`capture.concurrent: ${N} simultaneous logins, async verify (${variant.name})`, () => {
    it('(a) a registered, named strategy', async () => {
      const recorded = makeStrategy()
      const before = ownProperties(recorded.strategy)
      const { app, sqreen, log } = harness(variant, ({ app, passport }) => {
        passport.use(recorded.strategy)
        app.post('/login', passport.authenticate('local', { session: false }), answer)
      })
      await loginsLeaveStrategyIntact({ app, sqreen, log }, recorded, before)
    })

    it('(b) a strategy object passed to authenticate() in middleware built after sqreenAuth()', async () => {
      const recorded = makeStrategy()
      const before = ownProperties(recorded.strategy)
      const { app, sqreen, log } = harness(variant, ({ app, passport }) => {
        // passport assigns each request's action functions to this one shared object.
        app.post('/login', passport.authenticate(recorded.strategy, { session: false }), answer)
      })
      await loginsLeaveStrategyIntact({ app, sqreen, log }, recorded, before)
    })

    it('(c) a strategy object created before sqreenAuth(), watched, then passed to authenticate()', async () => {
      // Created before sqreenAuth() exists (harness calls it).
      const recorded = makeStrategy()
      const before = ownProperties(recorded.strategy)
      const { app, sqreen, log } = harness(variant, ({ app, passport, sqreen }) => {
        // watch() and the hooked authenticate() both apply: still one event per request.
        app.post('/login', passport.authenticate(sqreen.watch(recorded.strategy), { session: false }), answer)
      })
      await loginsLeaveStrategyIntact({ app, sqreen, log }, recorded, before)
    })

    // Built by hand: `authenticate` is taken from the Authenticator before sqreenAuth()
    // hooks it (as a module loaded first would), so only watch() can make it observed.
    const builtBefore = (v: Variant) => {
      const app = v.express()
      const passport = new v.passport.Passport() as Authenticator
      app.use(v.express.urlencoded({ extended: false }))
      app.use(passport.initialize())
      const recorded = makeStrategy()
      const unwatched = makeStrategy()
      const authenticateBefore = passport.authenticate.bind(passport)

      const log = new EventLog()
      const sqreen = sqreenAuth({ passport, onEvent: log.push, logger: new MemoryLogger() })
      app.use(sqreen)
      app.post('/login', authenticateBefore(sqreen.watch(recorded.strategy), { session: false }), answer)
      app.post('/unwatched', authenticateBefore(unwatched.strategy, { session: false }), answer)
      return { app, sqreen, log, recorded }
    }

    it('(d) a strategy object passed through sqreen.watch() to an authenticate() taken before sqreenAuth()', async () => {
      const { app, sqreen, log, recorded } = builtBefore(variant)
      const before = ownProperties(recorded.strategy)
      await loginsLeaveStrategyIntact({ app, sqreen, log }, recorded, before)
    })

    it('(d, control) without watch() that same pre-hook path is not observed, so (d) proves watch()', async () => {
      const { app, sqreen, log } = builtBefore(variant)
      const built = { server: await listen(app), sqreen, log }
      try {
        await request(built.server)
          .post('/unwatched')
          .type('form')
          .send({ username: 'user1', password: 'pw-1' })
          .expect(200)
        await request(built.server)
          .post('/login')
          .type('form')
          .send({ username: 'user1', password: 'pw-1' })
          .expect(200)
        await log.waitFor(1)
        const events = await log.settle()
        assert.equal(events.length, 1, 'only the watched route is seen')
        assert.equal(events[0]!.userKey, 'id:u-1')
      } finally {
        await shutdown(built)
      }
    })
  })
}
