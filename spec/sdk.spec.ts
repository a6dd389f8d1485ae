import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { describe, it } from 'node:test'
import type { Request } from 'express'
import { Passport } from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, anonEmail, type Options, type SqreenAuth, sqreenAuth } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

const PASSWORD = 'correct horse'
const ALICE = { id: 7, username: 'alice', email: 'alice@example.com' }

/**
 * A passport-local app whose routes call the SDK:
 * - POST /login: automatic capture, then authTrack(success) from the route;
 * - POST /login-callback: a custom callback that reports failures with authTrack(false);
 * - POST /signup: no passport at all, signupTrack;
 * - POST /secure: a logged-in route that raises a custom event against req.user.
 */
const setup = (variant: Variant, options: Partial<Options> = {}): Harness =>
  harness(
    variant,
    ({ app, passport, sqreen }) => {
      passport.use(new LocalStrategy((u, p, done) => done(null, u === 'alice' && p === PASSWORD ? ALICE : false)))
      app.post('/login', passport.authenticate('local', { session: false }), (req, res) => {
        sqreen.authTrack(req, true, { id: 'manual-7', tenant: 'acme' })
        res.json({ ok: true })
      })
      app.post('/login-callback', (req, res, next) => {
        passport.authenticate('local', { session: false }, (err: unknown, user: unknown) => {
          if (err) return next(err)
          if (!user) {
            sqreen.authTrack(req, false, { id: 'who-7' })
            return res.status(403).json({ ok: false })
          }
          res.json({ ok: true })
        })(req, res, next)
      })
      app.post('/signup', (req, res) => {
        sqreen.signupTrack(req, { id: 'new-1' })
        res.status(201).end()
      })
      app.post('/secure', passport.authenticate('local', { session: false }), (req, res) => {
        const body = req.body as { severity?: string; contact?: string }
        if (body.severity === undefined) sqreen.trackEvent(req, 'page_viewed')
        else {
          sqreen.trackEvent(req, 'sql_injection', {
            severity: body.severity as 'high',
            properties: {
              param: 'q',
              count: 3,
              blocked: true,
              ...(body.contact === undefined
                ? {}
                : { contact: body.contact, anon: anonEmail(7, body.contact), note: 'x@y' }),
            },
          })
        }
        res.json({ ok: true })
      })
    },
    options,
  )

for (const variant of variants) {
  describe(`SDK (${variant.name})`, () => {
    it('authTrack(req, true, identity) replaces the automatic login event of the request', async () => {
      const h = setup(variant)
      await request(h.app).post('/login').send({ username: 'alice', password: PASSWORD }).expect(200)
      const [event] = await h.log.waitFor(1)
      assert.equal(event?.type, 'login.succeeded')
      assert.equal(event?.source, 'sdk')
      assert.equal(event?.strategy, null)
      assert.deepEqual(event?.identity, { id: 'manual-7', tenant: 'acme' })
      assert.equal(event?.userKey, 'id:manual-7')
      // One event, not two: the automatic capture of the same request was replaced.
      assert.equal((await h.log.settle()).length, 1)
      await h.sqreen.close()
    })

    it('authTrack(req, false, identity) from a custom callback replaces the automatic failure', async () => {
      const h = setup(variant)
      await request(h.app).post('/login-callback').send({ username: 'alice', password: 'nope' }).expect(403)
      const [event] = await h.log.waitFor(1)
      assert.equal(event?.type, 'login.failed')
      assert.equal(event?.source, 'sdk')
      assert.equal(event?.reason, 'invalid_credentials')
      assert.deepEqual(event?.identity, { id: 'who-7' })
      assert.equal(event?.status, 403)
      assert.equal((await h.log.settle()).length, 1)
      await h.sqreen.close()
    })

    it('signupTrack emits a signup event with the identity given', async () => {
      const h = setup(variant)
      await request(h.app).post('/signup').expect(201)
      const [event] = await h.log.waitFor(1)
      assert.equal(event?.type, 'signup')
      assert.equal(event?.source, 'sdk')
      assert.equal(event?.strategy, null)
      assert.deepEqual(event?.identity, { id: 'new-1' })
      assert.equal(event?.userKey, 'id:new-1')
      await h.sqreen.close()
    })

    it('trackEvent carries name, severity and properties, and counts against req.user', async () => {
      const h = setup(variant)
      await request(h.app).post('/secure').send({ username: 'alice', password: PASSWORD, severity: 'high' }).expect(200)
      const events = await h.log.waitFor(2)
      assert.deepEqual(
        events.map((e) => e.type),
        ['login.succeeded', 'custom'],
      )
      const custom = events[1]
      assert.equal(custom?.source, 'sdk')
      assert.equal(custom?.name, 'sql_injection')
      assert.equal(custom?.severity, 'high')
      assert.deepEqual(custom?.properties, { param: 'q', count: 3, blocked: true })
      assert.deepEqual(custom?.identity, ALICE)
      assert.equal(custom?.userKey, 'id:7')
      await h.sqreen.close()
    })

    it("trackEvent's severity defaults to 'low'", async () => {
      const h = setup(variant)
      await request(h.app).post('/secure').send({ username: 'alice', password: PASSWORD }).expect(200)
      const custom = (await h.log.waitFor(2)).find((e) => e.type === 'custom')
      assert.equal(custom?.name, 'page_viewed')
      assert.equal(custom?.severity, 'low')
      assert.equal(custom?.properties, undefined)
      await h.sqreen.close()
    })

    it('trackEvent with an unknown option (a typo) still records the event, and says so once, counted each time', async () => {
      const h = harness(variant, ({ app, sqreen }) => {
        app.post('/typo', (req, res) => {
          sqreen.trackEvent(req, 'sql_injection', { severty: 'high', identity: { id: 'typo-1' } } as never)
          // Options built from request data: the key is free text, never written to the log.
          sqreen.trackEvent(req, 'probe', { [String(req.query.k)]: 1, identity: { id: 'typo-2' } } as never)
          res.status(204).end()
        })
      })
      await request(h.app).post('/typo?k=<b>secret answer</b>').expect(204)
      await request(h.app).post('/typo?k=other text').expect(204)
      const events = await h.log.waitFor(4)
      assert.deepEqual(
        events.map((e) => [e.type, e.name, e.severity, e.identity]),
        [
          ['custom', 'sql_injection', 'low', { id: 'typo-1' }],
          ['custom', 'probe', 'low', { id: 'typo-2' }],
          ['custom', 'sql_injection', 'low', { id: 'typo-1' }],
          ['custom', 'probe', 'low', { id: 'typo-2' }],
        ],
      )
      // Counted per call, logged once for the kind, whatever the keys.
      assert.equal(h.sqreen.stats().counters.sdk_bad_arguments, 4)
      const warned = h.logger.lines.filter((l) => l.startsWith('warn ') && l.includes('unknown option'))
      assert.equal(warned.length, 1, h.logger.lines.join('\n'))
      assert.match(warned[0] ?? '', /"severty"\. Did you mean "severity"\?/)
      assert.ok(!h.logger.lines.join('\n').includes('secret answer'))
      assert.ok(!h.logger.lines.join('\n').includes('other text'))
      await h.sqreen.close()
    })

    it('drops e-mail-valued properties in advanced mode, keeping anonEmail values', async () => {
      const h = setup(variant, {
        mode: 'advanced',
        secret: 'sdk-spec-secret-0123456789abcdef',
        identify: (u: typeof ALICE) => ({ id: u.id }),
      })
      await request(h.app)
        .post('/secure')
        .send({ username: 'alice', password: PASSWORD, severity: 'medium', contact: 'Alice.Smith@Example.com' })
        .expect(200)
      const custom = (await h.log.waitFor(2)).find((e) => e.type === 'custom')
      assert.deepEqual(custom?.identity, { id: 7 })
      assert.deepEqual(custom?.properties, {
        param: 'q',
        count: 3,
        blocked: true,
        anon: 'anon-7@example.com',
      })
      const text = JSON.stringify({ events: h.log.events, lines: h.logger.lines }).toLowerCase()
      assert.ok(!text.includes('alice.smith'))
      assert.ok(h.logger.lines.some((l) => l.startsWith('warn ') && l.includes('"contact"')))
      await h.sqreen.close()
    })

    it('never throws on bad arguments: one warning per kind, every call counted, no event', async () => {
      let sqreen: SqreenAuth | undefined
      const bad: [string, (req: Request) => void][] = [
        ['authTrack', () => sqreen?.authTrack({} as Request, true, { id: 1 })],
        ['authTrack', (req) => sqreen?.authTrack(req, 'yes' as unknown as boolean, { id: 1 })],
        ['authTrack', (req) => sqreen?.authTrack(req, true, 'alice' as unknown as Record<string, string>)],
        ['signupTrack', (req) => sqreen?.signupTrack(req, null as unknown as Record<string, string>)],
        ['trackEvent', (req) => sqreen?.trackEvent(req, 'bad name!')],
        ['trackEvent', (req) => sqreen?.trackEvent(req, 42 as unknown as string)],
        ['trackEvent', (req) => sqreen?.trackEvent(req, 'ok', { severity: 'urgent' as 'high' })],
        ['trackEvent', () => sqreen?.trackEvent(null as unknown as Request, 'ok')],
      ]
      const thrown: unknown[] = []
      const h = harness(variant, ({ app, sqreen: s }) => {
        sqreen = s
        app.get('/bad', (req, res) => {
          for (const [, call] of bad) {
            try {
              call(req)
              call(req)
            } catch (err) {
              thrown.push(err)
            }
          }
          res.send('still fine')
        })
      })
      await request(h.app).get('/bad').expect(200, 'still fine')
      assert.deepEqual(thrown, [])
      assert.equal(h.sqreen.stats().counters.sdk_bad_arguments, bad.length * 2)
      const warned = h.logger.lines.filter((l) => l.startsWith('warn '))
      // One warning per distinct mistake (the two invalid event names are one mistake), each
      // logged once although every call was made twice: a hot bug cannot flood the log.
      assert.equal(warned.length, 7)
      assert.equal(new Set(warned).size, warned.length)
      for (const method of ['authTrack', 'signupTrack', 'trackEvent']) {
        assert.ok(
          warned.some((l) => l.includes(`${method}()`)),
          method,
        )
      }
      assert.deepEqual(await h.log.settle(), [])
      await h.sqreen.close()
    })

    it('still emits when called after the response has finished', async () => {
      const h = harness(variant, ({ app, sqreen }) => {
        app.get('/late', (req, res) => {
          res.on('finish', () =>
            setImmediate(() => {
              sqreen.trackEvent(req, 'late_event', { identity: { id: 'late-1' } })
              sqreen.authTrack(req, false, { id: 'late-2' })
            }),
          )
          res.send('done')
        })
      })
      await request(h.app).get('/late').expect(200, 'done')
      const events = await h.log.waitFor(2)
      const custom = events.find((e) => e.type === 'custom')
      assert.equal(custom?.name, 'late_event')
      assert.deepEqual(custom?.identity, { id: 'late-1' })
      const login = events.find((e) => e.type === 'login.failed')
      assert.equal(login?.source, 'sdk')
      assert.deepEqual(login?.identity, { id: 'late-2' })
      await h.sqreen.close()
    })
  })
}

describe('sdk: authTrack as applications call it', () => {
  const variant = variants[0]!
  /** An ORM-like user instance: the ORM's state among its own fields. */
  class OrmUser {
    uniqno = 1
    constructor(readonly id: number) {}
  }
  const build = () =>
    harness(variant, ({ app, passport, sqreen }) => {
      passport.use(new LocalStrategy((u, p, done) => done(null, u === 'alice' && p === PASSWORD ? ALICE : false)))
      // A batch endpoint (GraphQL mutations, a bulk login API): several attempts in one request.
      app.post('/batch', (req, res) => {
        for (const { login, ok } of req.body.attempts as { login: string; ok: boolean }[]) {
          sqreen.authTrack(req, ok, { login })
        }
        res.status(204).end()
      })
      // authTrack from a timer after a passport login's response: too late, its event went out.
      app.post('/late', passport.authenticate('local', { session: false }), (req, res) => {
        res.send('welcome')
        setTimeout(() => sqreen.authTrack(req, true, { id: 1 }), 30)
      })
      // The same, with a custom event in between (a context of its own for the request).
      app.post('/late-after-event', passport.authenticate('local', { session: false }), (req, res) => {
        res.send('welcome')
        setTimeout(() => sqreen.trackEvent(req, 'profile_viewed'), 30)
        setTimeout(() => sqreen.authTrack(req, true, { id: 1 }), 80)
      })
      // Both in one turn: the custom event's context is still open when authTrack comes.
      app.post('/late-same-turn', passport.authenticate('local', { session: false }), (req, res) => {
        res.send('welcome')
        setTimeout(() => {
          sqreen.trackEvent(req, 'profile_viewed')
          sqreen.authTrack(req, true, { id: 1 })
        }, 30)
      })
      app.post('/orm', (req, res) => {
        sqreen.authTrack(req, false, new OrmUser(Number(req.body.id)) as unknown as Record<string, string | number>)
        res.status(204).end()
      })
    })

  it('several calls in one request are several attempts: a batch of guesses is counted whole', async () => {
    const { app, sqreen, log } = build()
    try {
      const attempts = [
        ...Array.from({ length: 5 }, () => ({ login: 'bob', ok: false })),
        { login: 'carol', ok: false },
        { login: 'dave', ok: true },
      ]
      await request(app).post('/batch').send({ attempts }).expect(204)
      const events = await log.exactly(7)
      assert.deepEqual(
        events.map((e) => [e.type, e.identity.login]),
        attempts.map((a) => [a.ok ? 'login.succeeded' : 'login.failed', a.login]),
      )
    } finally {
      await sqreen.close()
    }
  })

  it("authTrack after the request's login event went out is ignored and said, not a second event", async () => {
    const { app, sqreen, log, logger } = build()
    try {
      await request(app).post('/late').type('form').send({ username: 'alice', password: PASSWORD }).expect(200)
      await log.waitFor(1)
      await new Promise((r) => setTimeout(r, 100))
      assert.equal((await log.settle()).length, 1)
      assert.ok(
        logger.lines.some((l) => l.includes('sdk_late.authTrack')),
        logger.lines.join('\n'),
      )
    } finally {
      await sqreen.close()
    }
  })

  for (const route of ['/late-after-event', '/late-same-turn'])
    it(`a late authTrack is ignored after a custom event of the same request (${route})`, async () => {
      const { app, sqreen, log, logger } = build()
      try {
        await request(app).post(route).type('form').send({ username: 'alice', password: PASSWORD }).expect(200)
        await log.waitFor(2)
        await new Promise((r) => setTimeout(r, 150))
        assert.deepEqual(
          (await log.settle()).map((e) => e.type),
          ['login.succeeded', 'custom'],
        )
        assert.ok(
          logger.lines.some((l) => l.includes('sdk_late.authTrack')),
          logger.lines.join('\n'),
        )
      } finally {
        await sqreen.close()
      }
    })

  it('an ORM instance as the identity is refused whole, not read as its internals', async () => {
    const { app, sqreen, log, logger } = build()
    try {
      await request(app).post('/orm').send({ id: 1 }).expect(204)
      await request(app).post('/orm').send({ id: 2 }).expect(204)
      const events = await log.exactly(2)
      for (const e of events) assert.equal(e.userKey, null, JSON.stringify(e.identity))
      assert.ok(
        logger.lines.some((l) => l.includes('identity_invalid.authTrack')),
        logger.lines.join('\n'),
      )
    } finally {
      await sqreen.close()
    }
  })
})

describe('SDK: a request that is not an Express request', () => {
  it("a plain node:http handler's event carries the client's address (the socket's: no trust proxy to honour)", async () => {
    const seen: AuthEvent[] = []
    const sqreen = sqreenAuth({ passport: new Passport(), onEvent: (e) => void seen.push(e) })
    const server = createServer((req, res) => {
      sqreen.authTrack(req as unknown as Request, false, { id: 'raw-1' })
      res.end('ok')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const { port } = server.address() as { port: number }
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'user-agent': 'raw-client/1' } })
      assert.equal(await res.text(), 'ok')
      await sqreen.close()
      assert.equal(seen.length, 1)
      assert.equal(seen[0]?.type, 'login.failed')
      assert.equal(seen[0]?.userKey, 'id:raw-1')
      assert.equal(seen[0]?.ip, '127.0.0.1')
      assert.equal(seen[0]?.userAgent, 'raw-client/1')
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})
