import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

// Users in every shape the documented rule distinguishes. The keys are the attempted logins.
const objectId = { toHexString: () => '65a1f0c2e4b0a1b2c3d4e5f6', toString: () => 'ObjectId(65a1f0c2e4b0a1b2c3d4e5f6)' }
const USERS: Record<string, unknown> = {
  alice: { id: 7, email: 'alice@example.com', username: 'alice', name: 'Alice Liddell', role: 'admin', phone: '555' },
  mongo: { _id: objectId, email: 'mongo@example.com' },
  both: { id: 'primary', _id: 'secondary', username: 'both' },
  stringy: 'u-42',
  numeric: 99,
  // Fields that merely *look* identifying are never used: no guessing from names.
  carol: { name: 'Carol', login: 'carol-login-field', mail: 'carol@mail.example', userEmail: 'c@x.example' },
  noid: { email: 'noid@example.com', username: 'noid' },
}
const PASSWORD = 'correct horse'

const setup = (variant: Variant): Harness =>
  harness(variant, ({ app, passport }) => {
    passport.use(
      new LocalStrategy((username, password, done) => {
        const user = USERS[username.trim().toLowerCase()]
        // The verify callback's types want an object; string and number users are valid at runtime.
        done(null, user !== undefined && password === PASSWORD ? (user as object) : false)
      }),
    )
    app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
      res.json({ ok: true })
    })
  })

const login = async (h: Harness, username: string, password = PASSWORD): Promise<AuthEvent> => {
  const before = h.log.events.length
  await request(h.app).post('/login').send({ username, password })
  const events = await h.log.waitFor(before + 1)
  return events[before] as AuthEvent
}

for (const variant of variants) {
  describe(`automatic identity (${variant.name})`, () => {
    it('takes id, email and username from the user object and nothing else', async () => {
      const h = setup(variant)
      const event = await login(h, 'alice')
      assert.equal(event.type, 'login.succeeded')
      assert.equal(event.mode, 'automatic')
      assert.deepEqual(event.identity, { id: 7, email: 'alice@example.com', username: 'alice' })
      assert.equal(event.userKey, 'id:7')
      // name, role and phone are not part of the rule and must not be forwarded anywhere.
      const json = JSON.stringify(event)
      assert.ok(!json.includes('Liddell'))
      assert.ok(!json.includes('admin'))
      await h.sqreen.close()
    })

    it('uses _id when there is no id, turning an ObjectId into its hex string', async () => {
      const h = setup(variant)
      const event = await login(h, 'mongo')
      assert.deepEqual(event.identity, { id: '65a1f0c2e4b0a1b2c3d4e5f6', email: 'mongo@example.com' })
      assert.equal(event.userKey, 'id:65a1f0c2e4b0a1b2c3d4e5f6')
      await h.sqreen.close()
    })

    it('prefers id over _id', async () => {
      const h = setup(variant)
      const event = await login(h, 'both')
      assert.deepEqual(event.identity, { id: 'primary', username: 'both' })
      assert.equal(event.userKey, 'id:primary')
      await h.sqreen.close()
    })

    it('treats a string or number user as the id itself', async () => {
      const h = setup(variant)
      const s = await login(h, 'stringy')
      assert.deepEqual(s.identity, { id: 'u-42' })
      assert.equal(s.userKey, 'id:u-42')
      const n = await login(h, 'numeric')
      assert.deepEqual(n.identity, { id: 99 })
      assert.equal(n.userKey, 'id:99')
      await h.sqreen.close()
    })

    it('never guesses from other field names: a user with only name/login/mail falls back to the attempted login', async () => {
      const h = setup(variant)
      const event = await login(h, '  Carol ')
      assert.equal(event.type, 'login.succeeded')
      assert.deepEqual(event.identity, { login: 'carol' })
      const json = JSON.stringify(event)
      for (const unused of ['carol-login-field', 'carol@mail.example', 'c@x.example', 'Carol']) {
        assert.ok(!json.includes(unused), `${unused} must not be read from the user object`)
      }
      await h.sqreen.close()
    })

    it('keys a user without id by the whole composite identity, in canonical order', async () => {
      const h = setup(variant)
      const event = await login(h, 'noid')
      assert.deepEqual(event.identity, { email: 'noid@example.com', username: 'noid' })
      assert.equal(event.userKey, 'email=noid%40example.com&username=noid')
      await h.sqreen.close()
    })

    it('a login holding half of a UTF-16 pair is keyed with U+FFFD in its place, as UTF-8 would carry it', async () => {
      const h = setup(variant)
      // JSON may carry a lone surrogate ("\ud800"); a Redis key or a link could not.
      const wrong = await login(h, 'Eve\uD800', 'wrong')
      assert.equal(wrong.loginKey, 'login:eve\uFFFD')
      assert.deepEqual(wrong.identity, { login: 'eve\uFFFD' })
      await h.sqreen.close()
    })

    it('a login that NFKC makes longer (U+FDFA is 18 characters) is cut back to 256, as the hub accepts it', async () => {
      const h = setup(variant)
      const wrong = await login(h, '\uFDFA'.repeat(250), 'wrong')
      const key = wrong.loginKey as string
      assert.equal(key.length, 'login:'.length + 256)
      assert.equal(wrong.identity.login, key.slice('login:'.length))
      // Never half a pair at the cut: an emoji is two code units.
      const emoji = await login(h, `${'a'.repeat(19)}\uFDFA${'\u{1F600}'.repeat(200)}`, 'wrong')
      const cutKey = (emoji.loginKey as string).slice('login:'.length)
      assert.ok(cutKey.length <= 256)
      assert.doesNotMatch(cutKey, /[\uD800-\uDBFF]$/, 'no half pair at the cut')
      await h.sqreen.close()
    })

    it('identifies a failed login by the normalised attempted login', async () => {
      const h = setup(variant)
      const wrong = await login(h, '  Alice@Example.COM ', 'wrong')
      assert.equal(wrong.type, 'login.failed')
      assert.equal(wrong.reason, 'invalid_credentials')
      assert.deepEqual(wrong.identity, { login: 'alice@example.com' })
      assert.equal(wrong.loginKey, 'login:alice@example.com')
      const unknown = await login(h, 'Nobody', 'whatever')
      assert.deepEqual(unknown.identity, { login: 'nobody' })
      // A request with no credentials at all has nobody to attribute it to.
      const before = h.log.events.length
      await request(h.app).post('/login').send({}).expect(400)
      const [missing] = (await h.log.waitFor(before + 1)).slice(before)
      assert.equal(missing?.reason, 'missing_credentials')
      assert.deepEqual(missing?.identity, {})
      assert.equal(missing?.userKey, null)
      await h.sqreen.close()
    })

    it('links failures to the user once the login succeeds, when typed as the user typed it', async () => {
      const h = setup(variant)
      const early = await login(h, 'ALICE', 'guess-1')
      assert.deepEqual(early.identity, { login: 'alice' })
      assert.equal(early.loginKey, 'login:alice')

      const success = await login(h, 'alice')
      assert.equal(success.type, 'login.succeeded')
      // The success carries the key under which the earlier failures were recorded.
      assert.equal(success.loginKey, early.loginKey)
      assert.equal(success.userKey, 'id:7')

      const later = await login(h, ' alice ', 'guess-2')
      assert.equal(later.type, 'login.failed')
      assert.equal(later.loginKey, 'login:alice')
      assert.deepEqual(later.identity, { id: 7, email: 'alice@example.com', username: 'alice' })
      assert.equal(later.userKey, 'id:7')

      // Typed otherwise, it may be another account of the application's (a look-alike, or
      // another case where the lookup tells case apart): counted under the login's key,
      // which scores and alerts as the login, and which the account's next success merges.
      const typedOtherwise = await login(h, '  AlIcE ', 'guess-3')
      assert.equal(typedOtherwise.loginKey, 'login:alice')
      assert.deepEqual(typedOtherwise.identity, { login: 'alice' })
      assert.equal(typedOtherwise.userKey, 'login:alice')

      // Another login is not affected by the link.
      const other = await login(h, 'mallory', 'guess-3')
      assert.deepEqual(other.identity, { login: 'mallory' })
      await h.sqreen.close()
    })
  })
}
