/**
 * What an end-to-end privacy audit found getting past the identity boundary when the
 * application passes personal data through the SDK by mistake, over HTTP: an e-mail used
 * as an identity key (it was named in the log and the problem counts), an address written
 * percent-encoded or otherwise disguised (it reached events), a password given as an
 * identity field or property (it was forwarded), and an error code carrying anything (it
 * was copied into `login.error` events).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { looksLikeEmail } from '../lib/identity/anon-email.js'
import type { Options } from '../lib/index.js'
import { harness, variants } from './helpers/apps.js'

const SECRET = 'identity-leaks-spec-secret-0123456789'
const ADDRESS = 'Jane.Doe.Secret@Example.org'
const variant = variants[0]!

const app = (options: Partial<Options>) =>
  harness(
    variant,
    ({ app, passport, sqreen }) => {
      passport.use(
        new LocalStrategy((login, _password, done) => {
          if (login === 'db-down') {
            const err = new Error('connection refused') as Error & { code: string }
            err.code = 'ECONNREFUSED'
            return done(err)
          }
          if (login === 'odd-code') {
            const err = new Error('odd') as Error & { code: string }
            err.code = `E_boom.${ADDRESS}`
            return done(err)
          }
          done(null, false)
        }),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (_req: Request, res: Response) => {
        res.json({ ok: true })
      })
      app.post('/auth-track', (req: Request, res: Response) => {
        sqreen.authTrack(req, false, { [ADDRESS]: 'x', id: 7 })
        res.json({ ok: true })
      })
      app.post('/signup', (req: Request, res: Response) => {
        sqreen.signupTrack(req, { id: 8, username: 'newperson', password: 'Signup-PW-999', userPassword: 'PW-2' })
        res.json({ ok: true })
      })
      app.get('/reset', (req: Request, res: Response) => {
        sqreen.trackEvent(req, 'reset_abuse', {
          severity: 'low',
          identity: { id: 9 },
          properties: { path: req.originalUrl, apiKey: 'k-123', note: 'fine' },
        })
        res.json({ ok: true })
      })
      app.use((_err: Error, _req: Request, res: Response, _next: unknown) => {
        res.status(500).json({ error: true })
      })
    },
    options,
  )

describe('identity leaks found by the privacy audit', () => {
  it('an e-mail used as an identity key is dropped without being named in the log or the problem counts', async () => {
    const h = app({ mode: 'advanced', secret: SECRET, identify: (u: { id: number }) => ({ id: u.id }) })
    try {
      await request(h.app).post('/auth-track').expect(200)
      const [event] = await h.log.exactly(1)
      assert.deepEqual(event?.identity, { id: 7 })
      const everything = [...h.logger.lines, ...Object.keys(h.sqreen.stats().problems)].join('\n')
      assert.ok(!everything.toLowerCase().includes('jane.doe'), everything)
      assert.match(everything, /a key that is not an identifier/)
    } finally {
      await h.sqreen.close()
    }
  })

  it('addresses written percent-encoded, as character references, full-width or as address literals are refused in advanced mode', async () => {
    for (const disguised of [
      'jane%40example.org',
      'JANE%40EXAMPLE.ORG',
      'jane&#64;example.org',
      'jane&#x40;example.org',
      'jane\uFF20example.org',
      'jane@[192.0.2.1]',
    ]) {
      assert.ok(looksLikeEmail(disguised), disguised)
    }
    for (const fine of ['100%', '50%40 off', 'a & b', 'C# 4.0', '@handle']) assert.ok(!looksLikeEmail(fine), fine)

    const h = app({ mode: 'advanced', secret: SECRET, identify: (u: { id: number }) => ({ id: u.id }) })
    try {
      await request(h.app)
        .get(`/reset?email=${encodeURIComponent(ADDRESS)}`)
        .expect(200)
      const [event] = await h.log.exactly(1)
      assert.deepEqual(event?.properties, { note: 'fine' }, 'the path with the address and the API key dropped')
      assert.ok(!JSON.stringify(event).toLowerCase().includes('jane.doe'))
    } finally {
      await h.sqreen.close()
    }
  })

  for (const mode of ['automatic', 'advanced'] as const) {
    it(`a password or API key given to the SDK never leaves the application (${mode} mode)`, async () => {
      const h = app(
        mode === 'advanced' ? { mode, secret: SECRET, identify: (u: { id: number }) => ({ id: u.id }) } : { mode },
      )
      try {
        await request(h.app).post('/signup').expect(200)
        await request(h.app).get('/reset').expect(200)
        const events = await h.log.exactly(2)
        const text = JSON.stringify(events)
        for (const secret of ['Signup-PW-999', 'PW-2', 'k-123'])
          assert.ok(!text.includes(secret), `${secret} in ${text}`)
        assert.deepEqual(events[0]?.identity, { id: 8, username: 'newperson' })
        assert.equal(events[0]?.userKey, 'id:8')
        assert.ok(!h.logger.lines.join('\n').includes('Signup-PW-999'))
      } finally {
        await h.sqreen.close()
      }
    })
  }

  it("login.error keeps an error's code only when it looks like one", async () => {
    const h = app({})
    try {
      await request(h.app).post('/login').send({ username: 'db-down', password: 'x' }).expect(500)
      await request(h.app).post('/login').send({ username: 'odd-code', password: 'x' }).expect(500)
      const events = await h.log.exactly(2)
      assert.deepEqual(events[0]?.error, { name: 'Error', code: 'ECONNREFUSED' })
      assert.deepEqual(events[1]?.error, { name: 'Error' })
    } finally {
      await h.sqreen.close()
    }
  })
})
