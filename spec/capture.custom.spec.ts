import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { NextFunction, Request, Response } from 'express'
import request from 'supertest'
import { sqreenAuth } from '../lib/index.js'
import { EventLog, harness, MemoryLogger, type Variant, variants } from './helpers/apps.js'

interface User {
  id: number
  username: string
}

const tokens = new Map<string, User>([['t-alice', { id: 1, username: 'alice' }]])

class TokenStoreError extends Error {
  override name = 'TokenStoreError'
  code = 'ETOKENSTORE'
}

/**
 * A hand-written strategy (no base class): `name` and `authenticate`, nothing
 * else. It reads an API token from a header; without one it passes the request
 * on anonymously, as an optional-auth API does.
 */
class TokenStrategy {
  readonly name: string = 'token'
  // Passport assigns these to the per-request instance before calling authenticate.
  declare success: (user: unknown) => void
  declare fail: (challenge?: unknown, status?: number) => void
  declare error: (err: Error) => void
  declare pass: () => void

  authenticate(req: Request): void {
    const token = req.get('x-api-token')
    if (token === undefined) {
      this.pass()
      return
    }
    setImmediate(() => {
      if (token === 'store-down') return this.error(new TokenStoreError('token table locked'))
      const user = tokens.get(token)
      if (user) this.success(user)
      else this.fail({ message: 'unknown token' }, 401)
    })
  }
}

const named = (name: string): TokenStrategy => Object.assign(new TokenStrategy(), { name })

// The login a token request claims to be, for strategies whose login passport cannot know.
const loginCalls: string[] = []
const loginOption = (req: Request, strategy: string): string | undefined => {
  loginCalls.push(strategy)
  return req.get('x-api-user')
}

const build = (variant: Variant) =>
  harness(
    variant,
    ({ app, passport }) => {
      passport.use(new TokenStrategy())
      app.get('/api/data', passport.authenticate('token', { session: false }), (req: Request, res: Response) => {
        res.json({ user: (req.user as User | undefined)?.username ?? null })
      })
      // Built now; the strategy it names is registered later.
      app.get('/api/late', passport.authenticate('late', { session: false }), (req: Request, res: Response) => {
        res.json({ user: (req.user as User).username })
      })
      app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
        res.status(500).json({ error: err.name })
      })
    },
    { login: loginOption },
  )

for (const variant of variants) {
  describe(`capture.custom: a hand-written token strategy (${variant.name})`, () => {
    it('a refused token is login.failed, keyed by the login the login option reads', async () => {
      loginCalls.length = 0
      const { app, sqreen, log } = build(variant)
      try {
        await request(app)
          .get('/api/data')
          .set('x-api-token', 'guessed')
          .set('x-api-user', '  Carol@Example.COM ')
          .expect(401)
        const events = await log.exactly(1)
        const event = events[0]!
        assert.equal(event.type, 'login.failed')
        assert.equal(event.strategy, 'token')
        assert.equal(event.reason, 'invalid_credentials')
        // Normalised (trimmed, lower-cased), so the same account is one key however it is typed.
        assert.equal(event.loginKey, 'login:carol@example.com')
        assert.deepEqual(event.identity, { login: 'carol@example.com' })
        assert.notEqual(event.userKey, null)
        assert.deepEqual(loginCalls, ['token'])
      } finally {
        await sqreen.close()
      }
    })

    it('without a login from the option, a failure is still recorded, about nobody', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        await request(app).get('/api/data').set('x-api-token', 'guessed').expect(401)
        await log.waitFor(1)
        const [event] = await log.settle()
        assert.equal(event!.type, 'login.failed')
        assert.equal(event!.loginKey, undefined)
        assert.equal(event!.userKey, null)
      } finally {
        await sqreen.close()
      }
    })

    it('a valid token is login.succeeded with the user', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        await request(app)
          .get('/api/data')
          .set('x-api-token', 't-alice')
          .set('x-api-user', 'alice')
          .expect(200, { user: 'alice' })
        const events = await log.exactly(1)
        assert.equal(events[0]!.type, 'login.succeeded')
        assert.equal(events[0]!.userKey, 'id:1')
        assert.equal(events[0]!.loginKey, 'login:alice')
      } finally {
        await sqreen.close()
      }
    })

    it('pass() is neutral: the anonymous request is served and no event is made', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        await request(app).get('/api/data').expect(200, { user: null })
        assert.equal((await log.settle()).length, 0)
        // Observation is live on this app: the next real attempt is the only event.
        await request(app).get('/api/data').set('x-api-token', 'guessed').expect(401)
        await log.waitFor(1)
        assert.deepEqual(
          (await log.settle()).map((e) => e.type),
          ['login.failed'],
        )
      } finally {
        await sqreen.close()
      }
    })

    it('error(err) is login.error with the class name and code, never the message', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        await request(app).get('/api/data').set('x-api-token', 'store-down').expect(500, { error: 'TokenStoreError' })
        const events = await log.exactly(1)
        const event = events[0]!
        assert.equal(event.type, 'login.error')
        assert.equal(event.strategy, 'token')
        assert.deepEqual(event.error, { name: 'TokenStoreError', code: 'ETOKENSTORE' })
        assert.equal(event.reason, undefined)
        assert.ok(!JSON.stringify(event).includes('token table locked'))
      } finally {
        await sqreen.close()
      }
    })

    it('a strategy registered after sqreenAuth() and after the app has served requests is observed', async () => {
      const { app, passport, sqreen, log } = build(variant)
      try {
        // Unknown until registered: passport's own answer, untouched.
        await request(app).get('/api/late').set('x-api-token', 't-alice').expect(500)
        passport.use(named('late'))
        await request(app).get('/api/late').set('x-api-token', 't-alice').expect(200, { user: 'alice' })
        const events = await log.exactly(1)
        assert.equal(events[0]!.type, 'login.succeeded')
        assert.equal(events[0]!.strategy, 'late')
        assert.equal(events[0]!.userKey, 'id:1')
      } finally {
        await sqreen.close()
      }
    })

    it('two sqreenAuth() on one Authenticator both see a login; after a.close() only b does', async () => {
      const { app, passport, sqreen: a, log: logA } = build(variant)
      const logB = new EventLog()
      const b = sqreenAuth({
        passport,
        onEvent: logB.push,
        logger: new MemoryLogger(),
        login: loginOption,
      })
      try {
        await request(app).get('/api/data').set('x-api-token', 't-alice').expect(200, { user: 'alice' })
        await Promise.all([logA.waitFor(1), logB.waitFor(1)])
        for (const log of [logA, logB]) {
          const events = await log.settle()
          assert.equal(events.length, 1)
          assert.equal(events[0]!.type, 'login.succeeded')
          assert.equal(events[0]!.userKey, 'id:1')
          // Each observer saw one attempt, not the other's as well.
          assert.deepEqual(events[0]!.attempts, [{ strategy: 'token', outcome: 'succeeded' }])
        }

        await a.close()
        await request(app).get('/api/data').set('x-api-token', 'guessed').expect(401)
        await logB.waitFor(2)
        assert.deepEqual(
          (await logB.settle()).map((e) => e.type),
          ['login.succeeded', 'login.failed'],
        )
        assert.equal(logA.events.length, 1, 'a closed observer sees nothing more')
      } finally {
        await a.close()
        await b.close()
      }
    })
  })
}

/**
 * A strategy whose `fail()` gets a string: Passport passes it on as a `WWW-Authenticate`
 * challenge, but strategies also pass plain messages there (passport-custom's
 * `done(null, false, 'Invalid code')`, passport-magic-login's token errors). Only a
 * challenge means no credentials were offered.
 */
class StringFailStrategy {
  readonly name = 'pin'
  declare fail: (challenge?: unknown, status?: number) => void
  authenticate(req: Request): void {
    this.fail(req.get('x-challenge'))
  }
}

for (const variant of variants) {
  describe(`capture.custom: fail() with a string (${variant.name})`, () => {
    it('a message is a refusal (invalid_credentials); a challenge without credentials of its scheme is missing_credentials', async () => {
      const { app, sqreen, log } = harness(variant, ({ app, passport }) => {
        passport.use(new StringFailStrategy())
        app.post('/pin', passport.authenticate('pin', { session: false }), (_req: Request, res: Response) => {
          res.send('ok')
        })
      })
      const cases: [challenge: string, authorization: string | undefined, reason: string][] = [
        ['Invalid PIN', undefined, 'invalid_credentials'],
        ['invalid signature', undefined, 'invalid_credentials'],
        ['jwt expired', 'Bearer abc', 'invalid_credentials'],
        ['Invalid', undefined, 'invalid_credentials'],
        ['Bearer realm="api"', undefined, 'missing_credentials'],
        ['Bearer realm="api"', 'Basic YTpi', 'missing_credentials'],
        ['Bearer realm="api"', 'Bearer abc', 'invalid_credentials'],
        ['Bearer realm="api", error="invalid_token"', 'Bearer abc', 'invalid_credentials'],
        ['Negotiate', undefined, 'missing_credentials'],
        ['Custom realm="x"', undefined, 'missing_credentials'],
      ]
      try {
        for (const [challenge, authorization, _] of cases) {
          const req = request(app).post('/pin').set('x-challenge', challenge)
          if (authorization !== undefined) req.set('authorization', authorization)
          // The response is Passport's own: a 401 with the string as its challenge.
          const res = await req.expect(401)
          assert.equal(res.headers['www-authenticate'], challenge)
        }
        const events = await log.exactly(cases.length)
        assert.deepEqual(
          events.map((e) => e.reason),
          cases.map(([, , reason]) => reason),
        )
      } finally {
        await sqreen.close()
      }
    })
  })
}

/** A strategy whose authenticate throws instead of calling error(): a bug, or a driver throwing synchronously. */
class ThrowingStrategy {
  readonly name = 'throws'
  authenticate(): void {
    throw new RangeError('lookup table index out of range')
  }
}

for (const variant of variants) {
  describe(`capture.custom: a strategy that throws (${variant.name})`, () => {
    it('is a login.error (named, or passed directly), and Express handles the exception exactly once, as without sqreen-auth', async () => {
      const handled: string[] = []
      const { app, sqreen, log } = harness(variant, ({ app, passport }) => {
        passport.use(new ThrowingStrategy())
        app.post('/named', passport.authenticate('throws', { session: false }), (_req: Request, res: Response) => {
          res.send('ok')
        })
        app.post('/direct', passport.authenticate(new ThrowingStrategy() as never, { session: false }), (_req, res) => {
          res.send('ok')
        })
        app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
          handled.push(err.name)
          res.status(500).json({ error: err.name })
        })
      })
      try {
        await request(app).post('/named').expect(500, { error: 'RangeError' })
        await request(app).post('/direct').expect(500, { error: 'RangeError' })
        assert.deepEqual(handled, ['RangeError', 'RangeError'])
        const events = await log.exactly(2)
        for (const e of events) {
          assert.equal(e.type, 'login.error')
          assert.equal(e.strategy, 'throws')
          assert.deepEqual(e.error, { name: 'RangeError' })
          assert.equal(e.status, 500)
        }
      } finally {
        await sqreen.close()
      }
    })
  })
}
