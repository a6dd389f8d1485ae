/**
 * Strategies that are not the usual kind, over HTTP on both Express/Passport pairs:
 * - a strategy class with `#private` members passed directly to `authenticate`: it only
 *   works on itself, not on an object derived from it, and sqreen-auth must neither break
 *   it (fail open) nor stop observing it;
 * - `ignoreStrategies`: an API token checked on every request (passport-jwt and the like)
 *   is not a login, and makes no event when the application says so.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { SqreenAuthError, sqreenAuth } from '../lib/index.js'
import { EventLog, harness, MemoryLogger, variants } from './helpers/apps.js'

interface User {
  id: number
  username: string
}

/** Checks a token with private state and a private method, synchronously or after an await. */
class PrivateTokenStrategy {
  readonly name = 'private-token'
  readonly #tokens = new Map<string, User>([['t-alice', { id: 1, username: 'alice' }]])
  declare success: (user: unknown) => void
  declare fail: (challenge?: unknown, status?: number) => void

  constructor(readonly later = false) {}

  #check(req: Request): void {
    const user = this.#tokens.get(req.get('x-api-token') ?? '')
    if (user) this.success(user)
    else this.fail({ message: 'unknown token' }, 401)
  }

  authenticate(req: Request): unknown {
    if (!this.later) return this.#check(req)
    return (async () => {
      await null
      this.#check(req)
    })()
  }
}

/** What passport-jwt does without a token: fail(new Error('No auth token')); with one, success. */
class JwtLikeStrategy {
  readonly name = 'jwt'
  declare success: (user: unknown) => void
  declare fail: (challenge?: unknown, status?: number) => void

  authenticate(req: Request): void {
    if (req.get('authorization') === 'Bearer good') this.success({ id: 1, username: 'alice' })
    else this.fail(new Error('No auth token'))
  }
}

for (const variant of variants) {
  describe(`capture.strategies (${variant.name})`, () => {
    for (const later of [false, true]) {
      it(`a strategy object with #private members passed directly works and is observed (${later ? 'async' : 'sync'} authenticate)`, {
        timeout: 15_000,
      }, async () => {
        const strategy = new PrivateTokenStrategy(later)
        const h = harness(variant, ({ app, passport }) => {
          app.get(
            '/api',
            passport.authenticate(strategy as never, { session: false }),
            (req: Request, res: Response) => {
              res.json({ user: (req.user as User).username })
            },
          )
        })
        const unhandled: unknown[] = []
        const onUnhandled = (reason: unknown): void => void unhandled.push(reason)
        process.on('unhandledRejection', onUnhandled)
        try {
          await request(h.app).get('/api').set('x-api-token', 't-alice').expect(200, { user: 'alice' })
          await request(h.app).get('/api').set('x-api-token', 'guessed').expect(401)
          // Again, now that it is known to need itself.
          await request(h.app).get('/api').set('x-api-token', 't-alice').expect(200, { user: 'alice' })
          const events = await h.log.exactly(3)
          assert.deepEqual(
            events.map((e) => [e.type, e.strategy, e.userKey]),
            [
              ['login.succeeded', 'private-token', 'id:1'],
              ['login.failed', 'private-token', null],
              ['login.succeeded', 'private-token', 'id:1'],
            ],
          )
          await new Promise((resolve) => setTimeout(resolve, 20))
          assert.deepEqual(unhandled, [])
          assert.deepEqual(h.sqreen.stats().problems, {})
        } finally {
          process.off('unhandledRejection', onUnhandled)
          await h.sqreen.close()
        }
      })
    }

    it('ignoreStrategies: an API token strategy makes no event; the login form still does', async () => {
      const h = harness(
        variant,
        ({ app, passport }) => {
          passport.use(new JwtLikeStrategy() as never)
          passport.use(
            new LocalStrategy((username, password, done) =>
              done(null, password === 'right' ? { id: 1, username } : false),
            ),
          )
          app.get('/api/me', passport.authenticate('jwt', { session: false }), (_req: Request, res: Response) => {
            res.json({ ok: true })
          })
          app.post('/login', passport.authenticate('local', { session: false }), (_req: Request, res: Response) => {
            res.json({ ok: true })
          })
        },
        { ignoreStrategies: ['jwt'] },
      )
      try {
        for (let i = 0; i < 5; i++) await request(h.app).get('/api/me').expect(401)
        await request(h.app).get('/api/me').set('Authorization', 'Bearer good').expect(200)
        await request(h.app).post('/login').send({ username: 'alice', password: 'wrong' }).expect(401)
        await request(h.app).post('/login').send({ username: 'alice', password: 'right' }).expect(200)
        const events = await h.log.exactly(2)
        assert.deepEqual(
          events.map((e) => [e.type, e.strategy]),
          [
            ['login.failed', 'local'],
            ['login.succeeded', 'local'],
          ],
        )
        // Nothing was scored for the API calls: no failures from that address.
        const risk = await h.sqreen.risk('id:1')
        assert.ok(
          risk.entries.every((e) => e.detection !== 'success_from_flagged_ip'),
          JSON.stringify(risk.entries),
        )
      } finally {
        await h.sqreen.close()
      }
    })
  })
}

describe('capture.strategies: options', () => {
  it('ignoreStrategies must be an array of strategy names', () => {
    for (const bad of ['jwt', [''], [1], null, {}]) {
      assert.throws(
        () => sqreenAuth({ ignoreStrategies: bad as never }),
        (err: unknown) =>
          err instanceof SqreenAuthError &&
          err.code === 'ERR_SQREEN_OPTION_TYPE' &&
          /"ignoreStrategies" must be an array of strategy names/.test(err.message),
        JSON.stringify(bad),
      )
    }
  })
})

for (const variant of variants) {
  describe(`capture: requests initialised by another Authenticator (${variant.name})`, () => {
    const appWith = (observed: 'same' | 'other', order: 'after' | 'before') => {
      const app = variant.express()
      const used = new variant.passport.Passport()
      used.use(new LocalStrategy((u, p, done) => done(null, u === 'alice' && p === 'secret' ? { id: 1 } : false)))
      const logger = new MemoryLogger()
      const log = new EventLog()
      const sqreen = sqreenAuth({
        passport: observed === 'same' ? used : new variant.passport.Passport(),
        logger,
        onEvent: log.push,
        scoring: false,
      })
      app.use(variant.express.urlencoded({ extended: false }))
      if (order === 'before') app.use(sqreen)
      app.use(used.initialize())
      if (order === 'after') app.use(sqreen)
      app.post('/login', used.authenticate('local', { session: false }), (_req: Request, res: Response) => {
        res.send('ok')
      })
      app.get('/hello', (_req: Request, res: Response) => {
        res.send('hello')
      })
      return { app, sqreen, logger, log }
    }
    const warnings = (logger: MemoryLogger) => logger.lines.filter((l) => l.includes('passport_not_observed'))

    it('warns once, naming the fix, when the app authenticates with an Authenticator sqreen-auth does not observe', async () => {
      const { app, sqreen, logger, log } = appWith('other', 'after')
      try {
        for (let i = 0; i < 3; i++) {
          await request(app).post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        }
        await request(app).get('/hello').expect(200)
        assert.equal(warnings(logger).length, 1)
        assert.match(warnings(logger)[0] ?? '', /sqreenAuth\(\{ passport \}\)/)
        assert.equal(sqreen.stats().problems.passport_not_observed, 1)
        // What the warning is about: nothing was seen.
        assert.equal((await log.settle()).length, 0)
      } finally {
        await sqreen.close()
      }
    })

    it('no warning for the observed Authenticator, whether sqreen-auth is mounted after initialize() or before it', async () => {
      for (const order of ['after', 'before'] as const) {
        const { app, sqreen, logger, log } = appWith('same', order)
        try {
          await request(app).get('/hello').expect(200)
          await request(app).post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
          await log.exactly(1)
          assert.deepEqual(warnings(logger), [], order)
        } finally {
          await sqreen.close()
        }
      }
    })
  })
}
