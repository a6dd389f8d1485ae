import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { NextFunction, Request, Response } from 'express'
import session from 'express-session'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { harness, type Variant, variants } from './helpers/apps.js'

interface User {
  id: number
  username: string
  email: string
}

const alice: User = { id: 7, username: 'alice', email: 'alice@example.com' }
const usersById = new Map([[alice.id, alice]])
const aliceIdentity = { id: 7, email: 'alice@example.com', username: 'alice' }

/** A code checked against the request (passport-custom's shape): success with `check`'s user, else fail('Invalid code'). */
class CustomCodeStrategy {
  readonly name = 'code'
  declare success: (user: unknown) => void
  declare fail: (challenge?: unknown, status?: number) => void
  constructor(private readonly check: (req: Request) => unknown) {}
  authenticate(req: Request): void {
    const user = this.check(req)
    if (user) this.success(user)
    else this.fail('Invalid code')
  }
}

/** An app with login sessions: every request after the login runs the `session` strategy. */
const build = (variant: Variant) => {
  let deserialized = 0
  let storeDown = false
  const h = harness(variant, ({ app, passport, sqreen }) => {
    app.use(session({ secret: 'capture-session-spec', resave: false, saveUninitialized: false }))
    app.use(passport.session())
    passport.use(
      new LocalStrategy((username, password, done) =>
        setImmediate(() => done(null, username === 'alice' && password === 'secret' ? alice : false)),
      ),
    )
    passport.serializeUser((user, done) => done(null, (user as User).id))
    passport.deserializeUser((id: number, done) =>
      setImmediate(() => {
        deserialized++
        if (storeDown) return done(new Error('users store unreachable'))
        done(null, usersById.get(id) ?? false)
      }),
    )
    app.post('/login', passport.authenticate('local'), (_req: Request, res: Response) => res.json({ ok: true }))
    // A second factor after the password (a TOTP code): no username field, the user is the session's.
    passport.use('totp', new CustomCodeStrategy((req) => (req.body?.code === '123456' ? req.user : false)))
    app.post(
      '/login/otp',
      (req: Request, res: Response, next: NextFunction) => (req.user ? next() : void res.status(401).end()),
      passport.authenticate('totp', { session: false }),
      (_req: Request, res: Response) => res.json({ ok: true }),
    )
    app.get('/me', (req: Request, res: Response) => {
      if (!req.user) return void res.status(401).end()
      res.json({ id: (req.user as User).id })
    })
    // The app's own detection (a WAF rule, a suspicious query) reports against whoever is logged in.
    app.post('/search', (req: Request, res: Response) => {
      sqreen.trackEvent(req, 'sql_injection', { severity: 'high' })
      res.json({ user: (req.user as User | undefined)?.id ?? null })
    })
    app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: err.message })
    })
  })
  return {
    ...h,
    deserialized: () => deserialized,
    setStoreDown: (down: boolean) => {
      storeDown = down
    },
  }
}

for (const variant of variants) {
  describe(`capture.session: session-restored users (${variant.name})`, () => {
    it('a wrong second factor (no login typed) on a logged-in request counts against that user', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        const agent = request.agent(app)
        await agent.post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await log.waitFor(1)
        for (let i = 0; i < 3; i++)
          await agent
            .post('/login/otp')
            .type('form')
            .send({ code: `00000${i}` })
            .expect(401)
        await agent.post('/login/otp').type('form').send({ code: '123456' }).expect(200)
        // A password typed for another account on the same logged-in request is still about that login.
        await agent.post('/login').type('form').send({ username: 'bob', password: 'guess' }).expect(401)
        const events = await log.exactly(6)
        const otp = events.slice(1, 4)
        for (const e of otp) {
          assert.equal(e.type, 'login.failed')
          assert.equal(e.strategy, 'totp')
          assert.equal(e.reason, 'invalid_credentials')
          assert.equal(e.userKey, 'id:7')
          assert.deepEqual(e.identity, aliceIdentity)
          assert.equal(e.loginKey, undefined)
        }
        assert.equal(events[4]?.type, 'login.succeeded')
        assert.equal(events[4]?.userKey, 'id:7')
        assert.equal(events[5]?.loginKey, 'login:bob')
        assert.notEqual(events[5]?.userKey, 'id:7')
      } finally {
        await sqreen.close()
      }
    })

    it('requests of a logged-in user go through the session strategy and make no login event', async () => {
      const { app, sqreen, log, deserialized } = build(variant)
      try {
        const agent = request.agent(app)
        await agent.post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await log.waitFor(1)

        for (let i = 0; i < 3; i++) {
          // Restored from the session each time: the strategy ran and succeeded in restoring alice.
          await agent.get('/me').expect(200, { id: 7 })
        }
        assert.equal(deserialized(), 3)

        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => e.type),
          ['login.succeeded'],
          'only the login itself is an event',
        )
        assert.equal(events[0]!.strategy, 'local')
        assert.ok(!events.some((e) => e.strategy === 'session'))
      } finally {
        await sqreen.close()
      }
    })

    it("trackEvent() on an authenticated request is a custom event about that request's user", async () => {
      const { app, sqreen, log } = build(variant)
      try {
        const agent = request.agent(app)
        await agent.post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await log.waitFor(1)

        await agent.post('/search').expect(200, { user: 7 })
        await log.waitFor(2)
        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => e.type),
          ['login.succeeded', 'custom'],
        )
        const custom = events[1]!
        assert.equal(custom.name, 'sql_injection')
        assert.equal(custom.severity, 'high')
        assert.equal(custom.source, 'sdk')
        assert.equal(custom.strategy, null)
        assert.deepEqual(custom.identity, aliceIdentity)
        // The same ledger as the login, so the event raises alice's risk.
        assert.equal(custom.userKey, 'id:7')
        assert.equal(custom.userKey, events[0]!.userKey)
      } finally {
        await sqreen.close()
      }
    })

    it('trackEvent() on an anonymous request is a custom event about nobody', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        await request(app).post('/search').expect(200, { user: null })
        const events = await log.exactly(1)
        const custom = events[0]!
        assert.equal(custom.type, 'custom')
        assert.equal(custom.name, 'sql_injection')
        assert.equal(custom.severity, 'high')
        assert.equal(custom.userKey, null)
        assert.deepEqual(custom.identity, {})
      } finally {
        await sqreen.close()
      }
    })

    it('a session strategy error (the user store is down) is not a login.error', async () => {
      const { app, sqreen, log, setStoreDown } = build(variant)
      try {
        const agent = request.agent(app)
        await agent.post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await log.waitFor(1)
        setStoreDown(true)
        // passport's session strategy answers this with its error action, which for any other
        // strategy is a login.error; restoring a session is never a login.
        await agent.get('/me').expect(500, { error: 'users store unreachable' })
        setStoreDown(false)
        await agent.get('/me').expect(200, { id: 7 })
        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => e.type),
          ['login.succeeded'],
        )
      } finally {
        await sqreen.close()
      }
    })

    it('once the session user is gone, the same browser is anonymous again for trackEvent()', async () => {
      const { app, sqreen, log } = build(variant)
      try {
        const agent = request.agent(app)
        await agent.post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await agent.post('/search').expect(200, { user: 7 })
        // A session whose user no longer exists: passport drops it and the request is anonymous.
        usersById.delete(7)
        try {
          await agent.post('/search').expect(200, { user: null })
        } finally {
          usersById.set(7, alice)
        }
        await log.waitFor(3)
        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => [e.type, e.userKey]),
          [
            ['login.succeeded', 'id:7'],
            ['custom', 'id:7'],
            ['custom', null],
          ],
        )
      } finally {
        await sqreen.close()
      }
    })
  })
}
