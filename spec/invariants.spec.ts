import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, type Options, SqreenAuthError, sqreenAuth } from '../lib/index.js'
import { EventLog, type Harness, harness, type Variant, variants } from './helpers/apps.js'

/**
 * One describe per invariant of DESIGN.md ("Invariants"), each over both
 * Express/Passport variants where the invariant concerns them.
 */

const PASSWORD = 'correct horse'
const ALICE = { id: 7, username: 'alice' }

/** A promise the test settles by hand, to hold work in flight at a known point. */
const deferred = <T = void>() => {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

const setup = (variant: Variant, options: Partial<Options> = {}, extra?: (h: Harness) => void): Harness =>
  harness(
    variant,
    (h) => {
      h.passport.use(new LocalStrategy((u, p, done) => done(null, u === 'alice' && p === PASSWORD ? ALICE : false)))
      extra?.(h)
      h.app.post('/login', h.passport.authenticate('local', { session: false }), (_req, res) => {
        res.json({ ok: true })
      })
    },
    options,
  )

/** Alternating good and bad logins; asserts each answer is exactly what the app alone would give. */
const loginMany = async (h: Harness, n: number): Promise<void> => {
  for (let i = 0; i < n; i++) {
    const good = i % 2 === 0
    await request(h.app)
      .post('/login')
      .send({ username: 'alice', password: good ? PASSWORD : 'wrong' })
      .expect(good ? 200 : 401)
  }
}

const linesWith = (h: Harness, kind: string): string[] => h.logger.lines.filter((l) => l.includes(kind))

for (const variant of variants) {
  describe(`invariant: never break the host's login (${variant.name})`, () => {
    it('survives an onEvent that throws: counted every time, logged once', async () => {
      const log = new EventLog()
      const h = setup(variant, {
        onEvent: (event) => {
          log.push(event)
          throw new Error('listener bug for alice')
        },
      })
      await loginMany(h, 12)
      await log.waitFor(12)
      assert.equal(h.sqreen.stats().counters.events, 12)
      assert.equal(h.sqreen.stats().problems.listener_threw, 12)
      const lines = linesWith(h, 'listener_threw')
      assert.equal(lines.length, 1)
      assert.ok(lines[0]?.startsWith('error '))
      // The error's message may carry user data; only its class is logged.
      assert.ok(!lines[0]?.includes('alice'))
      await h.sqreen.close()
    })

    it('survives an onEvent that returns a rejected promise, with no unhandled rejection', async () => {
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown): void => void unhandled.push(reason)
      process.on('unhandledRejection', onUnhandled)
      try {
        const log = new EventLog()
        const h = setup(variant, {
          onEvent: async (event) => {
            log.push(event)
            throw new Error('async listener bug')
          },
        })
        await loginMany(h, 12)
        await log.waitFor(12)
        await tick()
        assert.equal(h.sqreen.stats().problems.listener_rejected, 12)
        assert.equal(linesWith(h, 'listener_rejected').length, 1)
        assert.deepEqual(unhandled, [])
        await h.sqreen.close()
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })

    it('survives a "login" option that throws: the event is kept without the login', async () => {
      const h = setup(variant, {
        login: () => {
          throw new Error('login reader bug')
        },
      })
      await loginMany(h, 4)
      const events = await h.log.waitFor(4)
      assert.deepEqual(
        events.map((e) => e.type),
        ['login.succeeded', 'login.failed', 'login.succeeded', 'login.failed'],
      )
      // The success still identifies the user from the user object.
      assert.equal(events[0]?.userKey, 'id:7')
      assert.equal(h.sqreen.stats().problems.login_option_threw, 4)
      assert.equal(linesWith(h, 'login_option_threw').length, 1)
      await h.sqreen.close()
    })

    it('survives a logger whose methods throw', async () => {
      const log = new EventLog()
      let logCalls = 0
      const broken = {
        warn: () => {
          logCalls++
          throw new Error('log sink down')
        },
        error: () => {
          logCalls++
          throw new Error('log sink down')
        },
      }
      const h = setup(
        variant,
        {
          logger: broken,
          onEvent: (event) => {
            log.push(event)
            throw new Error('listener bug')
          },
        },
        ({ app, sqreen }) => {
          // A bad SDK call on the request path makes the package warn through the broken logger.
          app.use((req, _res, next) => {
            sqreen.trackEvent(req, 'not a valid name')
            next()
          })
        },
      )
      await loginMany(h, 4)
      await log.waitFor(4)
      const { problems, counters } = h.sqreen.stats()
      assert.equal(problems.listener_threw, 4)
      assert.equal(counters.sdk_bad_arguments, 4)
      // The logger was called (once per kind) and its failures were swallowed.
      assert.equal(logCalls, 2)
      await h.sqreen.close()
    })
  })

  describe(`invariant: nothing on the request path waits (${variant.name})`, () => {
    it('calls onEvent only after the response has been handed to Express', async () => {
      const order: string[] = []
      const h = setup(
        variant,
        {
          onEvent: (event) => {
            order.push(`event ${event.type} ${event.status}`)
          },
        },
        ({ app }) => {
          app.use((_req, res, next) => {
            res.on('finish', () => order.push(`finish ${res.statusCode}`))
            next()
          })
        },
      )
      await request(h.app).post('/login').send({ username: 'alice', password: PASSWORD }).expect(200)
      await request(h.app).post('/login').send({ username: 'alice', password: 'nope' }).expect(401)
      // No waitFor here (onEvent is the test's own): poll the order a few turns of the loop.
      for (let i = 0; i < 50 && order.length < 4; i++) await tick()
      assert.deepEqual(order, ['finish 200', 'event login.succeeded 200', 'finish 401', 'event login.failed 401'])
      await h.sqreen.close()
    })

    it('answers the client while the identity boundary is still waiting (slow identifyLogin)', async () => {
      const gate = deferred()
      const h = setup(variant, {
        identifyLogin: async () => {
          await gate.promise
          return { id: 7 }
        },
      })
      // Would time out if the response waited for identifyLogin.
      await request(h.app).post('/login').timeout(2000).send({ username: 'alice', password: 'nope' }).expect(401)
      await tick()
      assert.equal(h.log.events.length, 0, 'the event is still in flight after the client got its answer')
      gate.resolve()
      const [event] = await h.log.waitFor(1)
      assert.deepEqual(event?.identity, { id: 7 })
      assert.equal(event?.status, 401)
      await h.sqreen.close()
    })

    it('answers the client while async listeners are still pending', async () => {
      // The listener's promises stay pending until the end of the test: requests must not wait for them.
      const gate = deferred()
      let calls = 0
      const h = setup(variant, {
        onEvent: () => {
          calls++
          return gate.promise
        },
      })
      await loginMany(h, 6)
      for (let i = 0; i < 50 && calls < 6; i++) await tick()
      assert.equal(calls, 6)
      gate.resolve()
      await h.sqreen.close()
    })

    it('bounds work in flight by maxPending: further events are dropped and counted', async () => {
      const gate = deferred()
      const h = setup(variant, {
        maxPending: 3,
        identifyLogin: async () => {
          await gate.promise
          return undefined
        },
      })
      for (let i = 0; i < 5; i++) {
        await request(h.app)
          .post('/login')
          .send({ username: `user${i}`, password: 'nope' })
          .expect(401)
      }
      for (let i = 0; i < 50 && h.sqreen.stats().counters.dropped === undefined; i++) await tick()
      assert.equal(h.sqreen.stats().counters.dropped, 2)
      assert.equal(h.sqreen.stats().problems.pipeline_full, 2)
      assert.equal(linesWith(h, 'pipeline_full').length, 1)
      gate.resolve()
      await h.log.waitFor(3)
      assert.equal((await h.log.settle()).length, 3)
      // Room again once the pending work has gone through.
      await request(h.app).post('/login').send({ username: 'late', password: 'nope' }).expect(401)
      await h.log.waitFor(4)
      await h.sqreen.close()
    })
  })

  describe(`invariant: close() drains and unhooks (${variant.name})`, () => {
    it('waits for events in flight, then restores the Authenticator', async () => {
      const gate = deferred()
      const h = setup(variant, {
        identifyLogin: async () => {
          await gate.promise
          return { id: 7 }
        },
      })
      const proto = Object.getPrototypeOf(h.passport) as Record<string, unknown>
      const own = h.passport as unknown as Record<string, unknown>
      // While observing, the Authenticator carries our hooks as own properties.
      assert.ok(Object.hasOwn(own, '_strategy') && Object.hasOwn(own, 'authenticate'))

      await request(h.app).post('/login').send({ username: 'alice', password: 'nope' }).expect(401)
      let closed = false
      const closing = h.sqreen.close().then(() => {
        closed = true
      })
      for (let i = 0; i < 5; i++) await tick()
      assert.equal(closed, false, 'close() must wait for the pending event')
      gate.resolve()
      await closing
      assert.equal(h.log.events.length, 1, 'the pending event was delivered before close() resolved')
      assert.deepEqual(h.log.events[0]?.identity, { id: 7 })

      assert.ok(!Object.hasOwn(own, '_strategy') && !Object.hasOwn(own, 'authenticate'))
      assert.equal(own._strategy, proto._strategy)
      assert.equal(own.authenticate, proto.authenticate)
      // Routes built before close() keep working and are no longer observed.
      await request(h.app).post('/login').send({ username: 'alice', password: PASSWORD }).expect(200)
      assert.equal((await h.log.settle()).length, 1)
      // Idempotent.
      await h.sqreen.close()
    })
  })

  describe(`invariant: the client IP is req.ip (${variant.name})`, () => {
    for (const trust of [false, true]) {
      it(`${trust ? 'uses' : 'ignores'} X-Forwarded-For when trust proxy is ${trust ? 'on' : 'off'}`, async () => {
        const seen: string[] = []
        const h = setup(variant, {}, ({ app }) => {
          if (trust) app.set('trust proxy', 'loopback')
          app.use((req, _res, next) => {
            seen.push(req.ip ?? '')
            next()
          })
        })
        await request(h.app)
          .post('/login')
          .set('X-Forwarded-For', '203.0.113.7')
          .send({ username: 'alice', password: PASSWORD })
          .expect(200)
        const [event] = await h.log.waitFor(1)
        assert.equal(event?.ip, seen[0])
        if (trust) assert.equal(event?.ip, '203.0.113.7')
        else assert.match(event?.ip ?? '', /127\.0\.0\.1|::1/)
        await h.sqreen.close()
      })
    }
  })

  describe(`invariant: deterministic, documented identity rules (${variant.name})`, () => {
    it('gives the same user the same identity and key in independent instances', async () => {
      const user = { _id: 'abc', id: undefined, email: 'a@example.com', username: 'a', displayName: 'A', mail: 'x@y.z' }
      const events: AuthEvent[] = []
      for (let i = 0; i < 2; i++) {
        const h = harness(variant, ({ app, passport }) => {
          passport.use(new LocalStrategy((_u, _p, done) => done(null, user)))
          app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => res.end())
        })
        await request(h.app).post('/login').send({ username: 'a', password: 'b' }).expect(200)
        events.push(...(await h.log.waitFor(1)))
        await h.sqreen.close()
      }
      assert.deepEqual(events[0]?.identity, { id: 'abc', email: 'a@example.com', username: 'a' })
      assert.deepEqual(events[1]?.identity, events[0]?.identity)
      assert.equal(events[1]?.userKey, events[0]?.userKey)
    })
  })
}

describe('invariant: configuration errors throw at setup, runtime input never does', () => {
  it('throws a coded SqreenAuthError from sqreenAuth(), not from a request', () => {
    const passport = new (variants[0] as Variant).passport.Passport()
    assert.throws(
      () => sqreenAuth({ passport, mode: 'advanced' }),
      (err: unknown) => err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_IDENTIFY_REQUIRED',
    )
    const sqreen = sqreenAuth({ passport, logger: { warn: () => {}, error: () => {} } })
    // Garbage at runtime is counted, not thrown.
    assert.doesNotThrow(() => sqreen.trackEvent(undefined as never, undefined as never))
    assert.equal(sqreen.stats().counters.sdk_bad_arguments, 1)
    return sqreen.close()
  })
})
