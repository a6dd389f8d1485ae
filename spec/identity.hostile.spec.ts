/**
 * Values an attacker (or an application's own data) can put into an event, through real
 * passport-local logins and SDK calls, and what a real hub then does with the event. Each
 * case lost events before (a review with hostile strings, 2026-12-07): the hub refused
 * them one by one (an address that is no address, a composite key over its 512-character
 * limit, a `constructor` property), or the stores disagreed on who the user is (a lone
 * UTF-16 surrogate in an identity value). Every event here must be kept, keyed as UTF-8
 * would carry it, and accepted by the hub.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { type Harness, harness, variants } from './helpers/apps.js'
import { HS_SECRET, postBatch, type RunningHub, signBatch, startHub } from './helpers/hub.js'

const variant = variants[0]!

/** A login form whose users come from the request (the spec decides who logs in). */
const build = (trustProxy: boolean, users: Record<string, object>): Harness =>
  harness(variant, ({ app, passport, sqreen }) => {
    if (trustProxy) app.set('trust proxy', true)
    passport.use(new LocalStrategy((username, _password, done) => done(null, users[username] ?? false)))
    app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
      res.send('ok')
    })
    app.get('/search', (req, res) => {
      sqreen.trackEvent(req, 'search', { properties: req.query as Record<string, string> })
      res.send('ok')
    })
    app.post('/manual', (req, res) => {
      sqreen.authTrack(req, false, { id: String((req.body as { id: string }).id) })
      res.send('ok')
    })
  })

describe('hostile values: kept, keyed as UTF-8 carries them, and accepted by the hub', () => {
  let hub: RunningHub
  before(async () => {
    hub = await startHub()
  })
  after(async () => {
    await hub?.close()
  })

  /** Every event accepted by the hub, none rejected. */
  const acceptedByHub = async (events: readonly AuthEvent[]): Promise<void> => {
    const res = await postBatch(hub.ingestUrl, await signBatch(events, { key: HS_SECRET }))
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.accepted, events.length)
  }

  it("X-Forwarded-For that is no address: the event's ip is null; an address with a port is the address", async () => {
    const h = build(true, {})
    try {
      const zone = `fe80::1%${'z'.repeat(40)}`
      for (const forwarded of [
        'garbage',
        '203.0.113.7:51234',
        '[2001:db8::1]:443',
        '2001:db8::2',
        zone,
        '[2001:db8::3]',
      ]) {
        await request(h.app)
          .post('/login')
          .set('X-Forwarded-For', forwarded)
          .send({ username: 'eve', password: 'x' })
          .expect(401)
      }
      const events = await h.log.exactly(6)
      // An IPv6 zone names the writer's own interface (and the hub takes 45 characters at most).
      assert.deepEqual(
        events.map((e) => e.ip),
        [null, '203.0.113.7', '2001:db8::1', '2001:db8::2', 'fe80::1', '2001:db8::3'],
      )
      await acceptedByHub(events)
    } finally {
      await h.sqreen.close()
    }
  })

  it('a composite key over 512 characters becomes a fixed-length hash key, the same for the same user', async () => {
    // No id: the user key is the whole identity, percent-encoded (each 漢 is 9 characters).
    const user = { username: '漢'.repeat(60), email: 'kanji@example.com' }
    const h = build(false, { kanji: user })
    try {
      await request(h.app).post('/login').send({ username: 'kanji', password: 'x' }).expect(200)
      await request(h.app).post('/login').send({ username: 'kanji', password: 'x' }).expect(200)
      const [first, second] = await h.log.exactly(2)
      assert.match(first?.userKey ?? '', /^hash:[A-Za-z0-9_-]{43}$/)
      assert.equal(second?.userKey, first?.userKey)
      assert.deepEqual(first?.identity, user, 'the identity itself is kept as it is')
      await acceptedByHub([first as AuthEvent, second as AuthEvent])
    } finally {
      await h.sqreen.close()
    }
  })

  it('trackEvent properties named constructor, prototype or __proto__ are dropped; the event is kept', async () => {
    const h = build(false, {})
    try {
      await request(h.app).get('/search?constructor=1&prototype=2&q=shoes').expect(200)
      const [event] = await h.log.exactly(1)
      assert.deepEqual(event?.properties, { q: 'shoes' })
      await acceptedByHub([event as AuthEvent])
    } finally {
      await h.sqreen.close()
    }
  })

  it('identity values with a lone surrogate: one user whichever half, as in Redis (which sees UTF-8)', async () => {
    const h = build(false, {})
    try {
      for (const id of ['x\uD800', 'x\uDC00', 'x\uFFFD']) {
        await request(h.app).post('/manual').send({ id }).expect(200)
      }
      const events = await h.log.exactly(3)
      assert.deepEqual(
        events.map((e) => e.userKey),
        ['id:x\uFFFD', 'id:x\uFFFD', 'id:x\uFFFD'],
      )
      await acceptedByHub(events)
    } finally {
      await h.sqreen.close()
    }
  })
})
