import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import type { NextFunction, Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { harness, variants } from './helpers/apps.js'

const require = createRequire(import.meta.url)

const alice = { id: 1, username: 'alice' }

type Done = (err: null, user: false | typeof alice) => void
type Verify = (username: string, password: string, done: Done) => void

// passport-http ships no types; this is the part of it the tests use.
const { BasicStrategy } = require('passport-http') as {
  BasicStrategy: new (verify: Verify) => { name: string; authenticate(req: Request, options?: unknown): void }
}

const verify: Verify = (username, password, done) =>
  setImmediate(() => done(null, username === 'alice' && password === 'secret' ? alice : false))

const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** An infrastructure failure with a code, as a database driver would raise. */
class StoreDownError extends Error {
  override name = 'StoreDownError'
  code = 'ESTOREDOWN'
}

/** Waits for the one event of a request, then makes sure no second event follows. */
const onlyEvent = async (events: { waitFor(n: number): Promise<AuthEvent[]>; settle(): Promise<AuthEvent[]> }) => {
  await events.waitFor(1)
  const all = await events.settle()
  assert.equal(all.length, 1, `expected exactly one event, got ${JSON.stringify(all.map((e) => e.type))}`)
  return all[0] as AuthEvent
}

for (const variant of variants) {
  describe(`capture.chain: authenticate([...]) is one logical login (${variant.name})`, () => {
    const build = () => {
      let localCalls = 0
      const h = harness(variant, ({ app, passport }) => {
        passport.use(new BasicStrategy(verify))
        passport.use(
          new LocalStrategy((username, password, done) => {
            localCalls++
            verify(username, password, done)
          }),
        )
        // The middle strategy of a 3-chain: its user store is down.
        passport.use('boom', {
          name: 'boom',
          authenticate(this: { error(err: Error): void }) {
            setImmediate(() => this.error(new StoreDownError('connection refused to users-db:5432')))
          },
        } as never)
        const ok = (req: Request, res: Response) => res.json({ user: (req.user as typeof alice).username })
        app.post('/login', passport.authenticate(['basic', 'local'], { session: false }), ok)
        app.post('/login3', passport.authenticate(['basic', 'boom', 'local'], { session: false }), ok)
        // An anonymous fallback (passport-anonymous's behaviour: pass() always).
        passport.use('anonymous', {
          name: 'anonymous',
          authenticate(this: { pass(): void }) {
            this.pass()
          },
        } as never)
        app.post('/feed', passport.authenticate(['local', 'anonymous'], { session: false }), (req, res: Response) => {
          res.json({ user: (req.user as typeof alice | undefined)?.username ?? null })
        })
        app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
          res.status(500).json({ error: err.name })
        })
      })
      return { ...h, localCalls: () => localCalls }
    }

    it('basic without a header, then local succeeds: one login.succeeded by local, both attempts in order', async () => {
      const { app, sqreen, log } = build()
      try {
        const res = await request(app).post('/login').type('form').send({ username: 'alice', password: 'secret' })
        assert.equal(res.status, 200)
        assert.deepEqual(res.body, { user: 'alice' })

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.succeeded')
        assert.equal(event.strategy, 'local')
        assert.equal(event.source, 'passport')
        assert.equal(event.userKey, 'id:1')
        assert.deepEqual(event.identity, { id: 1, username: 'alice' })
        assert.equal(event.reason, undefined)
        assert.deepEqual(event.attempts, [
          { strategy: 'basic', outcome: 'failed', reason: 'missing_credentials' },
          { strategy: 'local', outcome: 'succeeded' },
        ])
      } finally {
        await sqreen.close()
      }
    })

    it('basic succeeds first: local is never tried and the chain still yields one event', async () => {
      const { app, sqreen, log, localCalls } = build()
      try {
        const res = await request(app).post('/login').set('Authorization', basicHeader('alice', 'secret'))
        assert.equal(res.status, 200)

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.succeeded')
        assert.equal(event.strategy, 'basic')
        assert.equal(event.loginKey, 'login:alice')
        assert.deepEqual(event.attempts, [{ strategy: 'basic', outcome: 'succeeded' }])
        assert.equal(localCalls(), 0)
      } finally {
        await sqreen.close()
      }
    })

    it('both fail, local was offered a wrong password: one login.failed, invalid_credentials', async () => {
      const { app, sqreen, log } = build()
      try {
        const res = await request(app).post('/login').type('form').send({ username: 'alice', password: 'nope' })
        assert.equal(res.status, 401)

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.failed')
        assert.equal(event.reason, 'invalid_credentials')
        // The strategy that refused offered credentials is the one that explains the failure.
        assert.equal(event.strategy, 'local')
        assert.equal(event.loginKey, 'login:alice')
        assert.equal(event.status, 401)
        assert.deepEqual(event.attempts, [
          { strategy: 'basic', outcome: 'failed', reason: 'missing_credentials' },
          { strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' },
        ])
      } finally {
        await sqreen.close()
      }
    })

    it('both fail, basic was offered a wrong password and local nothing: invalid_credentials, by basic', async () => {
      const { app, sqreen, log } = build()
      try {
        const res = await request(app).post('/login').set('Authorization', basicHeader('alice', 'wrong'))
        // passport answers with the first explicit status of the chain: local's 400 for an empty form.
        assert.equal(res.status, 400)

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.failed')
        assert.equal(event.reason, 'invalid_credentials')
        assert.equal(event.strategy, 'basic')
        assert.equal(event.loginKey, 'login:alice')
        assert.deepEqual(event.attempts, [
          { strategy: 'basic', outcome: 'failed', reason: 'invalid_credentials' },
          { strategy: 'local', outcome: 'failed', reason: 'missing_credentials' },
        ])
      } finally {
        await sqreen.close()
      }
    })

    it('both fail and no credentials were offered at all: one login.failed, missing_credentials', async () => {
      const { app, sqreen, log } = build()
      try {
        const res = await request(app).post('/login')
        assert.equal(res.status, 400)

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.failed')
        assert.equal(event.reason, 'missing_credentials')
        assert.equal(event.userKey, null)
        assert.equal(event.loginKey, undefined)
        assert.deepEqual(event.attempts, [
          { strategy: 'basic', outcome: 'failed', reason: 'missing_credentials' },
          { strategy: 'local', outcome: 'failed', reason: 'missing_credentials' },
        ])
      } finally {
        await sqreen.close()
      }
    })

    it('a chain of 3 with an error in the middle: one login.error, the rest of the chain is not run', async () => {
      const { app, sqreen, log, localCalls } = build()
      try {
        const res = await request(app).post('/login3').type('form').send({ username: 'alice', password: 'secret' })
        assert.equal(res.status, 500)
        assert.deepEqual(res.body, { error: 'StoreDownError' })

        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.error')
        assert.equal(event.strategy, 'boom')
        assert.deepEqual(event.error, { name: 'StoreDownError', code: 'ESTOREDOWN' })
        assert.equal(event.reason, undefined)
        assert.deepEqual(event.attempts, [
          { strategy: 'basic', outcome: 'failed', reason: 'missing_credentials' },
          { strategy: 'boom', outcome: 'error' },
        ])
        // The error message (which may hold hostnames or data) is never carried.
        assert.ok(!JSON.stringify(event).includes('users-db'))
        assert.equal(localCalls(), 0)
      } finally {
        await sqreen.close()
      }
    })

    it('an anonymous fallback serves a wrong password as a visitor: still one login.failed by local; no credentials, no event', async () => {
      const { app, sqreen, log } = build()
      try {
        const guess = await request(app).post('/feed').type('form').send({ username: 'alice', password: 'nope' })
        assert.equal(guess.status, 200)
        assert.deepEqual(guess.body, { user: null })
        const event = await onlyEvent(log)
        assert.equal(event.type, 'login.failed')
        assert.equal(event.strategy, 'local')
        assert.equal(event.reason, 'invalid_credentials')
        assert.equal(event.loginKey, 'login:alice')
        assert.deepEqual(event.attempts, [
          { strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' },
          { strategy: 'anonymous', outcome: 'pass' },
        ])
        // A visitor who offered nothing (local's 400) is an anonymous request, not a login.
        await request(app).post('/feed').type('form').send({}).expect(200, { user: null })
        await request(app).post('/feed').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        const events = await log.exactly(2)
        assert.equal(events[1]?.type, 'login.succeeded')
      } finally {
        await sqreen.close()
      }
    })

    it('consecutive chained requests each get their own single event', async () => {
      const { app, sqreen, log } = build()
      try {
        await request(app).post('/login').type('form').send({ username: 'alice', password: 'nope' }).expect(401)
        await request(app).post('/login').type('form').send({ username: 'alice', password: 'secret' }).expect(200)
        await log.waitFor(2)
        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => e.type),
          ['login.failed', 'login.succeeded'],
        )
      } finally {
        await sqreen.close()
      }
    })
  })
}
