import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import type { NextFunction, Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import OAuth2Strategy from 'passport-oauth2'
import request from 'supertest'
import { harness, type Variant, variants } from './helpers/apps.js'

interface Account {
  id: string
  username: string
}

const PROVIDER = 'https://provider.example/oauth/authorize'

// The provider's token endpoint, as the strategy would reach it over the network.
const exchangeCode = async (code: string): Promise<Account | undefined> => {
  await new Promise((resolve) => setTimeout(resolve, 5))
  return code === 'good-code' ? { id: 'gh-42', username: 'octocat' } : undefined
}

/**
 * An OAuth-like strategy built the way real ones are (passport-oauth2): it
 * extends passport's own `Strategy` class, sends the browser to the provider
 * when there is no `code`, and on the callback exchanges the code (async) for a
 * user.
 */
const providerStrategy = (variant: Variant) => {
  class ProviderStrategy extends variant.passport.Strategy {
    override name = 'provider'

    override authenticate(req: Request): void {
      const code = typeof req.query.code === 'string' ? req.query.code : undefined
      if (code === undefined) {
        this.redirect(`${PROVIDER}?client_id=app&redirect_uri=${encodeURIComponent('/auth/provider/callback')}`)
        return
      }
      exchangeCode(code).then(
        (account) => (account ? this.success(account) : this.fail({ message: 'bad code' }, 401)),
        (err: Error) => this.error(err),
      )
    }
  }
  return new ProviderStrategy()
}

for (const variant of variants) {
  describe(`capture.oauth: redirect then callback (${variant.name})`, () => {
    const build = () =>
      harness(variant, ({ app, passport }) => {
        passport.use(providerStrategy(variant))
        app.get('/auth/provider', passport.authenticate('provider', { session: false }))
        app.get(
          '/auth/provider/callback',
          passport.authenticate('provider', { session: false, successRedirect: '/home', failureRedirect: '/login' }),
        )
        // authorize() links a provider account to the current visitor: not a login.
        app.get('/connect/provider', passport.authorize('provider', { session: false }))
        app.get(
          '/connect/provider/callback',
          passport.authorize('provider', { session: false }),
          (req, res: Response) => {
            res.json({ account: (req as Request & { account?: Account }).account?.id ?? null })
          },
        )
      })

    it('the redirect to the provider is neutral; the callback with a code is one login.succeeded', async () => {
      const { app, sqreen, log } = build()
      try {
        const hop = await request(app).get('/auth/provider')
        assert.equal(hop.status, 302)
        assert.ok(hop.headers.location?.startsWith(PROVIDER), hop.headers.location)
        assert.equal((await log.settle()).length, 0, 'a redirect to the provider is not a login outcome')

        const callback = await request(app).get('/auth/provider/callback?code=good-code')
        // The app answers the success with a redirect too: what counts is the action, not the status.
        assert.equal(callback.status, 302)
        assert.equal(callback.headers.location, '/home')

        const events = await log.exactly(1)
        const event = events[0]!
        assert.equal(event.type, 'login.succeeded')
        assert.equal(event.strategy, 'provider')
        assert.equal(event.source, 'passport')
        assert.equal(event.status, 302)
        assert.deepEqual(event.identity, { id: 'gh-42', username: 'octocat' })
        assert.equal(event.userKey, 'id:gh-42')
        assert.deepEqual(event.attempts, [{ strategy: 'provider', outcome: 'succeeded' }])
      } finally {
        await sqreen.close()
      }
    })

    it('a callback whose code the provider refuses is one login.failed (failureRedirect answers)', async () => {
      const { app, sqreen, log } = build()
      try {
        const callback = await request(app).get('/auth/provider/callback?code=stolen-code')
        assert.equal(callback.status, 302)
        assert.equal(callback.headers.location, '/login')

        const events = await log.exactly(1)
        assert.equal(events[0]!.type, 'login.failed')
        assert.equal(events[0]!.strategy, 'provider')
        assert.equal(events[0]!.reason, 'invalid_credentials')
        // Nothing identifies the attempt: there is no login to read and no user.
        assert.equal(events[0]!.userKey, null)
      } finally {
        await sqreen.close()
      }
    })

    it('authorize() (assignProperty) is no login: neither its redirect nor its success makes an event', async () => {
      const { app, sqreen, log } = build()
      try {
        const hop = await request(app).get('/connect/provider')
        assert.equal(hop.status, 302)
        const linked = await request(app).get('/connect/provider/callback?code=good-code')
        assert.equal(linked.status, 200)
        // The strategy did run and hand over the account: the silence is not a broken route.
        assert.deepEqual(linked.body, { account: 'gh-42' })
        assert.equal((await log.settle()).length, 0)

        // The same strategy through authenticate() on the same app is observed.
        await request(app).get('/auth/provider/callback?code=good-code').expect(302)
        await log.waitFor(1)
        const events = await log.settle()
        assert.deepEqual(
          events.map((e) => e.type),
          ['login.succeeded'],
        )
      } finally {
        await sqreen.close()
      }
    })
  })
}

/**
 * The real passport-oauth2 against a provider on 127.0.0.1 (token endpoint only: the base
 * strategy asks for no profile). A user who declines at the provider comes back with
 * `error=access_denied`, which passport-oauth2 answers with fail(): no credentials were
 * offered, so it must not count as a wrong password against the client's address.
 */
describe('capture.oauth: the real passport-oauth2 (express 5 + passport 0.7)', () => {
  const variant = variants[0]!
  const provider = async () => {
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (c) => {
        body += c
      })
      req.on('end', () => {
        const code = new URLSearchParams(body).get('code')
        res.setHeader('content-type', 'application/json')
        if (req.url === '/token' && code === 'good-code')
          res.end(JSON.stringify({ access_token: 'at-1', token_type: 'bearer' }))
        else {
          res.statusCode = 400
          res.end(JSON.stringify({ error: 'invalid_grant' }))
        }
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
  }
  const build = (origin: string) =>
    harness(variant, ({ app, passport }) => {
      passport.use(
        'provider',
        new OAuth2Strategy(
          {
            authorizationURL: `${origin}/authorize`,
            tokenURL: `${origin}/token`,
            clientID: 'app',
            clientSecret: 'app-secret',
            callbackURL: '/auth/callback',
          },
          (_at: string, _rt: string, _profile: unknown, done: (err: unknown, user?: unknown) => void) =>
            done(null, { id: 'gh-42', username: 'octocat' }),
        ),
      )
      app.get('/auth/callback', passport.authenticate('provider', { session: false }), (_req, res: Response) => {
        res.send('welcome')
      })
      passport.use(new LocalStrategy((u, p, done) => done(null, u === 'alice' && p === 'secret' ? { id: 1 } : false)))
      app.post('/login', passport.authenticate('local', { session: false }), (_req, res: Response) => {
        res.send('ok')
      })
      // The refused code's TokenError, answered quietly (Express's default handler prints the stack).
      app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
        res.status(500).send(err.name)
      })
    })

  it('declined at the provider is missing_credentials; a refused code is login.error; a good one a success', async () => {
    const { server, origin } = await provider()
    const { app, sqreen, log } = build(origin)
    try {
      await request(app).get('/auth/callback?error=access_denied&error_description=User%20cancelled').expect(401)
      await request(app).get('/auth/callback?code=stolen-code').expect(500)
      await request(app).get('/auth/callback?code=good-code').expect(200, 'welcome')
      // The same query parameter on a password form changes nothing: a wrong password stays one.
      await request(app).post('/login?error=access_denied').type('form').send({ username: 'alice', password: 'x' })
      const events = await log.exactly(4)
      assert.deepEqual(
        events.map((e) => [e.type, e.strategy, e.reason]),
        [
          ['login.failed', 'provider', 'missing_credentials'],
          ['login.error', 'provider', undefined],
          ['login.succeeded', 'provider', undefined],
          ['login.failed', 'local', 'invalid_credentials'],
        ],
      )
      assert.equal(events[1]?.error?.name, 'TokenError')
      assert.equal(events[2]?.userKey, 'id:gh-42')
    } finally {
      await sqreen.close()
      server.close()
    }
  })
})
