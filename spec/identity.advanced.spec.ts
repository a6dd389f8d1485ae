import assert from 'node:assert/strict'
import { createHash, createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import type { Request } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, anonEmail, type Options, SqreenAuthError, sqreenAuth } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

const SECRET = 'advanced-mode-test-secret-0123456789'
const PASSWORD = 'correct horse'

interface User {
  id: number
  email: string
  username: string
  name: string
}

const jane = (): User => ({ id: 7, email: 'Jane.Doe@Example.com', username: 'janedoe', name: 'Jane Doe' })

/** The documented pseudonym, computed independently of the library. */
const expectedHash = (secret: string, login: string): string =>
  createHmac('sha256', secret).update(login.normalize('NFKC').trim().toLowerCase()).digest('base64url')

// Anything that would identify Jane if it leaked; none of it may cross the boundary.
const JANE_PII = ['jane.doe', 'janedoe', 'jane doe']

const assertNoPii = (value: unknown, needles: readonly string[] = JANE_PII): void => {
  const text = JSON.stringify(value).toLowerCase()
  for (const needle of needles) assert.ok(!text.includes(needle), `"${needle}" leaked into ${text}`)
}

/**
 * A passport-local app in advanced mode. Users are found by e-mail or username,
 * case-insensitively; `user` is read on every login so a test can change it.
 */
const setup = (variant: Variant, options: Partial<Options> = {}, user: () => User = jane): Harness =>
  harness(
    variant,
    ({ app, passport }) => {
      passport.use(
        new LocalStrategy((login, password, done) => {
          const u = user()
          const found = [u.email.toLowerCase(), u.username].includes(login.trim().toLowerCase())
          done(null, found && password === PASSWORD ? u : false)
        }),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
        res.json({ ok: true })
      })
    },
    { mode: 'advanced', secret: SECRET, identify: (u: User) => ({ id: u.id }), ...options },
  )

const attempt = async (h: Harness, username: string, password: string, status: number): Promise<AuthEvent> => {
  const before = h.log.events.length
  await request(h.app).post('/login').send({ username, password }).expect(status)
  const events = await h.log.waitFor(before + 1)
  return events[before] as AuthEvent
}

const warnings = (h: Harness): string[] => h.logger.lines.filter((l) => l.startsWith('warn '))

describe('advanced identity: setup', () => {
  const passportOf = (variant: Variant) => new variant.passport.Passport()

  it('requires identify, with a message that says how to fix it', () => {
    const variant = variants[0] as Variant
    assert.throws(
      () => sqreenAuth({ passport: passportOf(variant), mode: 'advanced', secret: SECRET }),
      (err: unknown) =>
        err instanceof SqreenAuthError &&
        err.code === 'ERR_SQREEN_IDENTIFY_REQUIRED' &&
        err.message.includes('identify: (user) => ({ id: user.id })'),
    )
  })

  it('requires a secret of at least 16 bytes', () => {
    const variant = variants[0] as Variant
    const saved = process.env.SQREEN_AUTH_SECRET
    delete process.env.SQREEN_AUTH_SECRET
    try {
      const base = { passport: passportOf(variant), mode: 'advanced' as const, identify: () => ({ id: 1 }) }
      for (const secret of [undefined, '', 'short', Buffer.alloc(15)]) {
        assert.throws(
          () => sqreenAuth(secret === undefined ? base : { ...base, secret }),
          (err: unknown) =>
            err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_SECRET' && err.message.includes('openssl rand'),
          `secret ${String(secret)} must be refused`,
        )
      }
      // Exactly 16 bytes is enough.
      void sqreenAuth({ ...base, passport: passportOf(variant), secret: Buffer.alloc(16, 1) }).close()
    } finally {
      if (saved !== undefined) process.env.SQREEN_AUTH_SECRET = saved
    }
  })
})

describe('anonEmail', () => {
  it('keeps only the domain, lower-cased, with IDN converted to punycode', () => {
    assert.equal(anonEmail(42, 'Jane.Doe@Example.COM'), 'anon-42@example.com')
    assert.equal(anonEmail(1, 'a@Bücher.Example'), 'anon-1@xn--bcher-kva.example')
    assert.equal(anonEmail('u_9', 'x@sub.EXAMPLE.org.'), 'anon-u_9@sub.example.org')
  })

  it('throws ERR_SQREEN_ANON_EMAIL on bad input', () => {
    const bad: [unknown, unknown][] = [
      ['', 'a@example.com'],
      ['has space', 'a@example.com'],
      [Number.NaN, 'a@example.com'],
      [{}, 'a@example.com'],
      [1, 'not-an-email'],
      [1, 'a@localhost'],
      [1, 'a@'],
      [1, undefined],
      [1, 42],
    ]
    for (const [id, email] of bad) {
      assert.throws(
        () => anonEmail(id as string, email as string),
        (err: unknown) => err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_ANON_EMAIL',
        `anonEmail(${String(id)}, ${String(email)})`,
      )
    }
  })
})

for (const variant of variants) {
  describe(`advanced identity (${variant.name})`, () => {
    it('lets only the output of identify cross the boundary', async () => {
      const h = setup(variant)
      const event = await attempt(h, 'Jane.Doe@Example.com', PASSWORD, 200)
      assert.equal(event.type, 'login.succeeded')
      assert.equal(event.mode, 'advanced')
      assert.deepEqual(event.identity, { id: 7 })
      assert.equal(event.userKey, 'id:7')
      // The login key on a success is the pseudonym, never the typed login.
      assert.equal(event.loginKey, `login:${expectedHash(SECRET, 'jane.doe@example.com')}`)
      assertNoPii(event)
      await h.sqreen.close()
    })

    it('drops volatile keys with a warning that names the key but not the value; keeps zip, tipId, description', async () => {
      const volatile = {
        ip: '198.51.100.23',
        lastLoginIp: '198.51.100.99',
        sessionId: 'sess-QWERTY',
        timestamp: 1700000000123,
        createdAt: '2021-02-03T04:05:06Z',
        token: 'tok-ZXCVBN',
      }
      const h = setup(variant, {
        identify: (u: User) => ({ id: u.id, ...volatile, zip: '75001', tipId: 'tip-3', description: 'gold' }),
      })
      const event = await attempt(h, 'janedoe', PASSWORD, 200)
      assert.deepEqual(event.identity, { id: 7, zip: '75001', tipId: 'tip-3', description: 'gold' })
      const warned = warnings(h).join('\n')
      for (const [key, value] of Object.entries(volatile)) {
        assert.ok(warned.includes(`"${key}"`), `a warning names ${key}`)
        assert.ok(!warned.includes(String(value)), `the warning must not contain the value of ${key}`)
      }
      assert.ok(!JSON.stringify(event).includes('198.51.100'))
      assert.equal(h.sqreen.stats().counters.identity_refused, Object.keys(volatile).length)
      await h.sqreen.close()
    })

    it('refuses plain e-mail values, alone or inside text, and accepts anonEmail values', async () => {
      const wrapped = {
        display: `Jane Doe <${jane().email}>`,
        link: `mailto:${jane().email}`,
        note: `${jane().email} (work)`,
        quoted: `"jane"@example.com`,
      }
      const h = setup(variant, {
        identify: (u: User) => ({
          id: u.id,
          contact: u.email,
          ...wrapped,
          team: 'a @ b',
          email: anonEmail(u.id, u.email),
        }),
      })
      const event = await attempt(h, 'janedoe', PASSWORD, 200)
      assert.deepEqual(event.identity, { id: 7, team: 'a @ b', email: 'anon-7@example.com' })
      const warned = warnings(h)
      assert.equal(warned.length, 1 + Object.keys(wrapped).length)
      assert.match(warned[0] as string, /"contact".*anonEmail/)
      for (const key of Object.keys(wrapped))
        assert.ok(
          warned.some((w) => w.includes(`"${key}"`)),
          key,
        )
      assertNoPii({ event, lines: h.logger.lines })
      await h.sqreen.close()
    })

    it('keys a failed login by HMAC-SHA256 of the normalised login, never a plain hash', async () => {
      const h = setup(variant)
      const hmac = expectedHash(SECRET, 'jane.doe@example.com')
      const wrong = await attempt(h, '  Jane.Doe@EXAMPLE.com ', 'nope', 401)
      assert.equal(wrong.type, 'login.failed')
      assert.deepEqual(wrong.identity, { loginHash: hmac })
      assert.equal(wrong.loginKey, `login:${hmac}`)
      const plain = createHash('sha256').update('jane.doe@example.com')
      const plainDigest = plain.digest()
      assert.notEqual(hmac, plainDigest.toString('base64url'))
      assert.ok(!JSON.stringify(wrong).includes(plainDigest.toString('hex')))
      assertNoPii(wrong)
      // NFKC: full-width letters are the same login.
      const fullWidth = await attempt(h, 'ＪＡＮＥ.ＤＯＥ@example.com', 'nope', 401)
      assert.deepEqual(fullWidth.identity, { loginHash: hmac })
      await h.sqreen.close()
    })

    it('gives different keys for different secrets', async () => {
      const a = setup(variant)
      const b = setup(variant, { secret: 'another-secret-of-sufficient-length' })
      const ea = await attempt(a, 'someone@example.com', 'x', 401)
      const eb = await attempt(b, 'someone@example.com', 'x', 401)
      assert.equal(eb.identity.loginHash, expectedHash('another-secret-of-sufficient-length', 'someone@example.com'))
      assert.notEqual(ea.identity.loginHash, eb.identity.loginHash)
      assert.notEqual(ea.loginKey, eb.loginKey)
      await a.sqreen.close()
      await b.sqreen.close()
    })

    for (const flavour of ['sync', 'async'] as const) {
      it(`maps a failed login with identifyLogin (${flavour})`, async () => {
        const seen: { login: string; header: string | undefined }[] = []
        const map = (login: string, req: Request) => {
          seen.push({ login, header: req.get('x-tenant') })
          return login.toLowerCase() === 'janedoe' ? { id: 7 } : undefined
        }
        const h = setup(variant, {
          identifyLogin: flavour === 'sync' ? map : async (login, req) => map(login, req),
        })
        const before = h.log.events.length
        await request(h.app)
          .post('/login')
          .set('x-tenant', 'acme')
          .send({ username: 'JaneDoe', password: 'nope' })
          .expect(401)
        const [mapped] = (await h.log.waitFor(before + 1)).slice(before)
        assert.deepEqual(mapped?.identity, { id: 7 })
        assert.equal(mapped?.userKey, 'id:7')
        // identifyLogin gets the login as typed and the real request.
        assert.deepEqual(seen, [{ login: 'JaneDoe', header: 'acme' }])
        // An unknown login still falls back to the pseudonym.
        const unknown = await attempt(h, 'stranger', 'nope', 401)
        assert.deepEqual(unknown.identity, { loginHash: expectedHash(SECRET, 'stranger') })
        await h.sqreen.close()
      })
    }

    it('falls back to the hash when identifyLogin throws, and logs it once', async () => {
      const h = setup(variant, {
        identifyLogin: () => {
          throw new Error('lookup failed for janedoe')
        },
      })
      for (let i = 0; i < 3; i++) {
        const event = await attempt(h, 'janedoe', 'nope', 401)
        assert.deepEqual(event.identity, { loginHash: expectedHash(SECRET, 'janedoe') })
      }
      const errors = h.logger.lines.filter((l) => l.includes('identifyLogin_threw'))
      assert.equal(errors.length, 1)
      // Only the error's class is logged: its message may carry the login.
      assertNoPii(h.logger.lines)
      assert.equal(h.sqreen.stats().problems.identifyLogin_threw, 3)
      await h.sqreen.close()
    })

    it('keeps the login working when identify throws; the event carries no user identity', async () => {
      const h = harness(
        variant,
        ({ app, passport }) => {
          passport.use('local', new LocalStrategy((_l, _p, done) => done(null, jane())))
          // A strategy that reads no login: there is nothing to fall back to.
          const custom = new variant.passport.Strategy()
          custom.authenticate = function (this: typeof custom) {
            this.success(jane())
          }
          passport.use('custom', custom)
          app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
            res.status(201).json({ ok: true })
          })
          app.post('/custom', passport.authenticate('custom', { session: false }), (_req, res) => {
            res.status(202).json({ ok: true })
          })
        },
        {
          mode: 'advanced',
          secret: SECRET,
          identify: () => {
            throw new Error('identify broke on Jane.Doe@Example.com')
          },
        },
      )
      await request(h.app).post('/custom').expect(202, { ok: true })
      const [custom] = await h.log.waitFor(1)
      assert.equal(custom?.type, 'login.succeeded')
      assert.deepEqual(custom?.identity, {})
      assert.equal(custom?.userKey, null)
      // With passport-local the attempted login is known: the event falls back to its pseudonym,
      // exactly as a failure would be keyed, so no personal data crosses either way.
      await request(h.app).post('/login').send({ username: 'janedoe', password: 'x' }).expect(201, { ok: true })
      const [, local] = await h.log.waitFor(2)
      assert.equal(local?.type, 'login.succeeded')
      assert.deepEqual(local?.identity, { loginHash: expectedHash(SECRET, 'janedoe') })
      const errors = h.logger.lines.filter((l) => l.includes('identify_threw'))
      assert.equal(errors.length, 1)
      assert.equal(h.sqreen.stats().problems.identify_threw, 2)
      assertNoPii({ events: h.log.events, lines: h.logger.lines })
      await h.sqreen.close()
    })

    it('keeps the userKey when the e-mail changes', async () => {
      let current = jane()
      const h = setup(
        variant,
        { identify: (u: User) => ({ id: u.id, email: anonEmail(u.id, u.email) }) },
        () => current,
      )
      const first = await attempt(h, 'janedoe', PASSWORD, 200)
      current = { ...current, email: 'jane@newmail.example' }
      const second = await attempt(h, 'janedoe', PASSWORD, 200)
      assert.equal(first.identity.email, 'anon-7@example.com')
      assert.equal(second.identity.email, 'anon-7@newmail.example')
      assert.equal(first.userKey, 'id:7')
      assert.equal(second.userKey, first.userKey)
      await h.sqreen.close()
    })

    it('links earlier failures to the user on success through the loginKey', async () => {
      const h = setup(variant)
      const hmac = expectedHash(SECRET, 'janedoe')
      const early = await attempt(h, 'JaneDoe', 'guess', 401)
      assert.deepEqual(early.identity, { loginHash: hmac })
      const success = await attempt(h, 'janedoe', PASSWORD, 200)
      assert.equal(success.loginKey, early.loginKey)
      assert.equal(success.userKey, 'id:7')
      const later = await attempt(h, ' janedoe ', 'guess', 401)
      assert.deepEqual(later.identity, { id: 7 })
      assert.equal(later.userKey, 'id:7')
      assert.equal(later.loginKey, `login:${hmac}`)
      // Typed otherwise: the login's key (see spec/identity.automatic.spec.ts).
      const typedOtherwise = await attempt(h, 'JANEDOE', 'guess', 401)
      assert.deepEqual(typedOtherwise.identity, { loginHash: hmac })
      assert.equal(typedOtherwise.userKey, `login:${hmac}`)
      // A link is per login: the e-mail login of the same account is a different key.
      const viaEmail = await attempt(h, 'jane.doe@example.com', 'guess', 401)
      assert.deepEqual(viaEmail.identity, { loginHash: expectedHash(SECRET, 'jane.doe@example.com') })
      assertNoPii(h.log.events)
      await h.sqreen.close()
    })
  })
}
