/**
 * What `identify()` may return, checked at the identity boundary (lib/identity/guard.ts)
 * through real passport-local logins: README "User context" says the output must be a
 * flat record of strings / numbers and that volatile keys are dropped with a warning that
 * names the key, never the value. Here: more volatile names (time, date, nonce,
 * loginTime, expiresAt, csrfToken), values of the wrong shape (nested objects, arrays,
 * booleans, null, empty or blank strings, NaN, Infinity, strings over 256 characters)
 * and bad key names. Each is dropped, the login still answers 200, and the event is
 * still emitted with the valid keys (and its user key) only.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import type { AuthEvent, Options } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

const SECRET = 'identity-values-spec-secret-0123456789'
const PASSWORD = 'correct horse'

interface User {
  readonly id: number
  readonly username: string
}
const JANE: User = { id: 7, username: 'janedoe' }

const app = (variant: Variant, options: Partial<Options>): Harness =>
  harness(
    variant,
    ({ app, passport }) => {
      passport.use(
        new LocalStrategy((login, password, done) => {
          done(null, login === JANE.username && password === PASSWORD ? JANE : false)
        }),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
        res.json({ ok: true })
      })
    },
    options,
  )

/** One successful login over HTTP: answers 200, and its one event. */
const logIn = async (h: Harness): Promise<AuthEvent> => {
  const before = h.log.events.length
  const res = await request(h.app).post('/login').send({ username: JANE.username, password: PASSWORD })
  assert.equal(res.status, 200, 'a refused identity field never changes the login’s answer')
  assert.deepEqual(res.body, { ok: true })
  const events = await h.log.exactly(before + 1)
  return events[before] as AuthEvent
}

const warnings = (h: Harness): string[] => h.logger.lines.filter((l) => l.startsWith('warn '))

/** Distinctive values: finding one in a log line can only mean it leaked there. */
const VOLATILE = {
  time: 'v-time-Q7ZP',
  date: '2031-07-14',
  nonce: 'v-nonce-K2MX',
  loginTime: 1_911_111_111_111,
  expiresAt: 'v-expires-W8RT',
  csrfToken: 'v-csrf-H4LN',
} as const

const LONG = `v-long-${'x'.repeat(293)}` // 300 characters
const EDGE_256 = `v-256-${'y'.repeat(250)}` // exactly 256: still allowed

/** Values of the wrong shape, each under its own key, and why they must go. */
const BAD_VALUES: Record<string, unknown> = {
  nested: { secretInside: 'v-nested-R5GB' },
  list: ['v-array-J3DC', 2],
  flag: true,
  disabled: false,
  empty: '',
  blank: '   ',
  notANumber: Number.NaN,
  infinite: Number.POSITIVE_INFINITY,
  negInfinite: Number.NEGATIVE_INFINITY,
  longText: LONG,
}

/** Keys that are not identifiers. */
const BAD_KEYS: Record<string, string> = {
  'has space': 'v-space-T6YU',
  '<b>': 'v-tag-P0OI',
  '': 'v-emptykey-A1SD',
}

const GOOD = { id: 7, plan: 'gold', tenant: 'acme-eu', seats: 0, ratio: -1.5, edge: EDGE_256 } as const

const secretValues = (): string[] => [
  ...Object.values(VOLATILE).map(String),
  'v-nested-R5GB',
  'v-array-J3DC',
  LONG,
  ...Object.values(BAD_KEYS),
]

for (const variant of variants) {
  describe(`identify() output at the identity boundary (${variant.name})`, () => {
    it('drops time, date, nonce, loginTime, expiresAt and csrfToken with a warning naming the key, not the value', async () => {
      const h = app(variant, {
        mode: 'advanced',
        secret: SECRET,
        identify: (u: User) => ({ id: u.id, ...VOLATILE, timezone: 'Europe/Paris', update: 'weekly' }),
      })
      try {
        const event = await logIn(h)
        assert.equal(event.type, 'login.succeeded')
        // Whole words only: "timezone" and "update" contain "time" and "date" but are not volatile.
        assert.deepEqual(event.identity, { id: 7, timezone: 'Europe/Paris', update: 'weekly' })
        assert.equal(event.userKey, 'id:7')
        const warned = warnings(h)
        for (const key of Object.keys(VOLATILE)) {
          const line = warned.find((l) => l.includes(`"${key}"`))
          assert.ok(line, `no warning names "${key}":\n${warned.join('\n')}`)
          assert.match(line, /volatile/)
        }
        assert.equal(warned.length, Object.keys(VOLATILE).length, warned.join('\n'))
        for (const value of secretValues()) {
          assert.ok(!h.logger.lines.join('\n').includes(value), `a log line carries the value ${value}`)
          assert.ok(!JSON.stringify(event).includes(value), `the event carries the value ${value}`)
        }
        assert.equal(h.sqreen.stats().counters.identity_refused, Object.keys(VOLATILE).length)
      } finally {
        await h.sqreen.close()
      }
    })

    it('drops nested objects, arrays, booleans, null, empty and blank strings, NaN, ±Infinity, a 300-character string and bad key names; keeps the rest', async () => {
      const h = app(variant, {
        mode: 'advanced',
        secret: SECRET,
        identify: (u: User) => ({ ...GOOD, id: u.id, ...BAD_VALUES, gone: null, missing: undefined, ...BAD_KEYS }),
      })
      try {
        const event = await logIn(h)
        assert.equal(event.type, 'login.succeeded')
        assert.deepEqual(event.identity, GOOD, 'only the flat string / finite number values, 256 characters at most')
        assert.equal(event.userKey, 'id:7')
        assert.ok(Object.isFrozen(event))

        const warned = warnings(h)
        for (const key of Object.keys(BAD_VALUES)) {
          const line = warned.find((l) => l.includes(`"${key}"`))
          assert.ok(line, `no warning names "${key}":\n${warned.join('\n')}`)
          assert.match(line, /non-empty strings \(at most 256 characters\) or finite numbers/)
        }
        // A key that is not an identifier is refused without being named: it may be anything.
        assert.ok(
          warned.some((l) => l.includes('a key that is not an identifier') && /keys are 1-64 letters/.test(l)),
          warned.join('\n'),
        )
        for (const key of ['has space', '<b>']) {
          assert.ok(!h.logger.lines.join('\n').includes(key), `a log line names the key "${key}"`)
        }
        for (const value of secretValues()) {
          assert.ok(!h.logger.lines.join('\n').includes(value), `a log line carries the value ${value.slice(0, 20)}`)
          assert.ok(!JSON.stringify(event).includes(value), `the event carries the value ${value.slice(0, 20)}`)
        }
        // Every refusal counted: ten bad values, three bad keys (null and undefined are "no value", not refused).
        const refused = Object.keys(BAD_VALUES).length + Object.keys(BAD_KEYS).length
        assert.equal(h.sqreen.stats().counters.identity_refused, refused)

        // A second login: the same identity, refused again (counted), warned about only once.
        const again = await logIn(h)
        assert.deepEqual(again.identity, GOOD)
        assert.equal(h.sqreen.stats().counters.identity_refused, 2 * refused)
        assert.equal(warnings(h).length, warned.length)
      } finally {
        await h.sqreen.close()
      }
    })
  })
}

describe('identify() output at the identity boundary: other modes and a fully refused identity', () => {
  const variant = variants[0] as Variant

  it('automatic mode with its own identify: the same checks apply', async () => {
    const h = app(variant, {
      identify: (u: User) => ({ id: u.id, loginTime: VOLATILE.loginTime, flag: true, longText: LONG, plan: 'gold' }),
    })
    try {
      const event = await logIn(h)
      assert.equal(event.mode, 'automatic')
      assert.deepEqual(event.identity, { id: 7, plan: 'gold' })
      assert.equal(event.userKey, 'id:7')
      const warned = warnings(h).join('\n')
      for (const key of ['loginTime', 'flag', 'longText']) assert.ok(warned.includes(`"${key}"`), key)
      assert.ok(!warned.includes(String(VOLATILE.loginTime)) && !warned.includes(LONG))
      assert.equal(h.sqreen.stats().counters.identity_refused, 3)
    } finally {
      await h.sqreen.close()
    }
  })

  it('an identity with nothing valid left: the login still succeeds and the event is keyed by the login pseudonym', async () => {
    const h = app(variant, {
      mode: 'advanced',
      secret: SECRET,
      identify: () => ({ time: VOLATILE.time, nested: { id: 7 }, flag: true, empty: '' }),
    })
    try {
      const event = await logIn(h)
      assert.equal(event.type, 'login.succeeded')
      const hash = createHmac('sha256', SECRET).update(JANE.username).digest('base64url')
      assert.deepEqual(event.identity, { loginHash: hash })
      assert.equal(event.userKey, `login:${hash}`)
      assert.equal(h.sqreen.stats().counters.identity_refused, 4)
      assert.ok(!h.logger.lines.join('\n').includes(VOLATILE.time))
    } finally {
      await h.sqreen.close()
    }
  })
})

describe('identity values: problem kinds stay bounded', () => {
  it('property keys read from requests (one new key per request) make one problem kind and one log line', async () => {
    const h = harness(
      variants[0] as Variant,
      ({ app, sqreen }) => {
        app.get('/search', (req, res) => {
          sqreen.trackEvent(req, 'search', { properties: req.query as Record<string, string> })
          res.json({ ok: true })
        })
      },
      { mode: 'advanced', secret: SECRET, identify: (u: User) => ({ id: u.id }) },
    )
    try {
      for (let i = 0; i < 200; i++) await request(h.app).get(`/search?k${i}=someone${i}@example.org`).expect(200)
      await h.log.waitFor(200)
      const { problems, counters } = h.sqreen.stats()
      assert.deepEqual(Object.keys(problems), ['identity_refused.trackEvent.properties.email'])
      assert.equal(counters.identity_refused, 200)
      assert.equal(h.logger.lines.filter((l) => l.includes('identity_refused')).length, 1, h.logger.lines.join('\n'))
      // Named once, and never the value.
      assert.ok(!h.logger.lines.join('\n').includes('@example.org'))
    } finally {
      await h.sqreen.close()
    }
  })

  it('past 1,000 kinds of problems, new kinds are counted together and logged once', async () => {
    const { createDiagnostics, OVERFLOW_KIND } = await import('../lib/diagnostics.js')
    const lines: string[] = []
    const diag = createDiagnostics({
      warn: (l: string) => void lines.push(l),
      error: (l: string) => void lines.push(l),
    })
    for (let i = 0; i < 1_500; i++) diag.warn(`kind.${i}`, 'a problem')
    diag.warn('kind.3', 'seen before: still its own kind')
    const { problems } = diag.snapshot()
    assert.equal(Object.keys(problems).length, 1_000)
    assert.equal(problems[OVERFLOW_KIND], 501)
    assert.equal(problems['kind.3'], 2)
    assert.equal(lines.length, 1_000, 'one line per kind kept, one for the overflow')
  })
})
