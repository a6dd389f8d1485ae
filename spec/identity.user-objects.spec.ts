/**
 * User objects as applications really have them, through real passport-local logins: ORM
 * instances (class instances with internals among their own fields), strict proxies and
 * throwing getters, a blank `id` next to a Mongo `_id`, and users that identify as nobody.
 * A login never breaks, the success event is never lost, and two users never share one
 * identity because of what an ORM put on its instances.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Request, Response } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import type { Options } from '../lib/index.js'
import { harness, variants } from './helpers/apps.js'

const variant = variants[0]!
const SECRET = 'user-objects-spec-secret-0123456789abcdef'

/** An ORM-like instance: the row's values behind getters, the ORM's own state as own fields. */
class OrmUser {
  uniqno = 1
  _options = { isNewRecord: false }
  dataValues: Record<string, unknown>
  constructor(values: Record<string, unknown>) {
    this.dataValues = values
  }
  get id(): unknown {
    return this.dataValues.id
  }
}

/** An ObjectId look-alike (the bson class's hex accessor). */
const objectId = (hex: string) => ({ toHexString: () => hex })

const users: Record<string, unknown> = {
  // A Proxy that throws on any key it does not have (some ORMs and validation layers do).
  strict: new Proxy({ id: 7, email: 'strict@example.com' } as Record<string, unknown>, {
    get(target, key) {
      if (typeof key === 'string' && !(key in target)) throw new TypeError(`no field ${key}`)
      return target[key as string]
    },
  }),
  getter: {
    id: 8,
    username: 'getter',
    get email(): string {
      throw new Error('decryption key unavailable')
    },
  },
  blank: { id: '', _id: objectId('65f1c0ffee0000000000abcd'), email: 'blank@example.com' },
  alice: new OrmUser({ id: 1 }),
  bob: new OrmUser({ id: 2 }),
  nobody: { name: 'No Keys' },
  // A username saved from a JSON sign-up holding half of a UTF-16 pair, and no id.
  lone: { username: 'eve\uD800', email: 'eve@example.com' },
}

const build = (options: Partial<Options> = {}) =>
  harness(
    variant,
    ({ app, passport }) => {
      passport.use(new LocalStrategy((username, _password, done) => done(null, users[username] ?? false)))
      app.post('/login', passport.authenticate('local', { session: false }), (_req: Request, res: Response) => {
        res.send('ok')
      })
    },
    options,
  )

const login = (app: Parameters<typeof request>[0], username: string) =>
  request(app).post('/login').type('form').send({ username, password: 'x' }).expect(200)

describe('identity: user objects as applications have them', () => {
  it('automatic: a field whose read throws is absent; the others identify the user and the event is kept', async () => {
    const { app, sqreen, log, logger } = build()
    try {
      await login(app, 'strict')
      await login(app, 'getter')
      const [strict, getter] = await log.exactly(2)
      assert.deepEqual(
        [strict?.type, strict?.userKey, strict?.identity],
        ['login.succeeded', 'id:7', { id: 7, email: 'strict@example.com' }],
      )
      assert.deepEqual([getter?.userKey, getter?.identity], ['id:8', { id: 8, username: 'getter' }])
      assert.ok(!logger.lines.some((l) => l.includes('boundary_failed')), logger.lines.join('\n'))
    } finally {
      await sqreen.close()
    }
  })

  it('automatic: a user without id whose username holds a lone surrogate is keyed, not dropped', async () => {
    const { app, sqreen, log, logger } = build()
    try {
      await login(app, 'lone')
      const [event] = await log.exactly(1)
      // The composite key is URI-encoded, and UTF-8 carries the half pair as U+FFFD.
      assert.equal(event?.userKey, 'email=eve%40example.com&username=eve%EF%BF%BD')
      assert.ok(!logger.lines.some((l) => l.includes('boundary_failed')), logger.lines.join('\n'))
    } finally {
      await sqreen.close()
    }
  })

  it('automatic: a blank id falls back to the Mongo _id', async () => {
    const { app, sqreen, log } = build()
    try {
      await login(app, 'blank')
      const [event] = await log.exactly(1)
      assert.equal(event?.userKey, 'id:65f1c0ffee0000000000abcd')
    } finally {
      await sqreen.close()
    }
  })

  it('advanced: an ORM instance returned by identify is refused whole; two users never become one identity', async () => {
    const { app, sqreen, log, logger } = build({
      mode: 'advanced',
      secret: SECRET,
      identify: (u: unknown) => u as never,
    })
    try {
      await login(app, 'alice')
      await login(app, 'bob')
      const [a, b] = await log.exactly(2)
      // Before: both were { uniqno: 1 } ("uniqno=1"), one ledger for every user.
      assert.notEqual(a?.userKey, b?.userKey)
      for (const e of [a, b]) {
        assert.match(e?.userKey ?? '', /^login:/, 'keyed by the login typed (HMAC), not by ORM internals')
        assert.equal((e?.identity as Record<string, unknown> | undefined)?.uniqno, undefined)
      }
      assert.ok(
        logger.lines.some((l) => l.includes('identity_invalid.identify') && l.includes('class or ORM instance')),
      )
    } finally {
      await sqreen.close()
    }
  })

  it('a logged-in user who identifies as nobody is said once, with what to do, in either mode', async () => {
    for (const options of [
      {},
      { mode: 'advanced', secret: SECRET, identify: (u: { id?: unknown }) => ({ id: u.id }) },
    ] as Partial<Options>[]) {
      const { app, sqreen, log, logger } = build(options)
      try {
        await login(app, 'nobody')
        await login(app, 'nobody')
        const events = await log.exactly(2)
        for (const e of events) assert.match(e.userKey ?? '', /^login:/)
        const warned = logger.lines.filter((l) => l.includes('identity_empty.'))
        assert.equal(warned.length, 1, logger.lines.join('\n'))
        assert.match(warned[0] ?? '', options.identify ? /String\(user\._id\)/ : /identify: \(user\)/)
      } finally {
        await sqreen.close()
      }
    }
  })
})
