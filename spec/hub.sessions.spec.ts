/**
 * Dashboard sessions of hubs that share a store (the documented Redis setup, several hubs
 * behind one balancer): a sign-in on one hub is good on every hub of the store and
 * survives a restart, sign-out on any of them ends it on all, an edited cookie opens
 * nothing, and while the store is down nobody is signed in (access control fails closed).
 * Real Redis (the shared server, and a redis-server of this spec's own for the outage),
 * real Express apps, HTTP through supertest.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { SignJWT } from 'jose'
import request from 'supertest'
import { sessionNames, sessionSecret } from '../lib/hub/auth.js'
import { RedisStore } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import { ed25519, HUB_TOKEN, type RunningHub, startHub } from './helpers/hub.js'
import { waitUntil } from './helpers/receivers.js'
import { dropKeys, inspector, keysUnder, REDIS_URL, RedisServer, testPrefix } from './helpers/redis.js'

const JWT_SECRET = Buffer.from('hub-sessions-jwt-secret-0123456789abcdef')

const signIn = async (hub: RunningHub, token = HUB_TOKEN): Promise<string> => {
  const res = await request(hub.app).post('/hub/login').type('form').send({ token }).expect(303)
  const header = res.headers['set-cookie'] as unknown as string[] | undefined
  const cookie = header?.find((c) => c.startsWith('sqreen_hub='))
  assert.ok(cookie, `no session cookie in ${JSON.stringify(header)}`)
  return cookie.split(';')[0] as string
}

/** The dashboard with this cookie: the subject shown, or `undefined` when sent to the sign-in page. */
const signedInAs = async (hub: RunningHub, cookie: string): Promise<string | undefined> => {
  const res = await request(hub.app).get('/hub/').set('Cookie', cookie)
  if (res.status === 303) {
    assert.equal(res.headers.location, '/hub/login')
    return undefined
  }
  assert.equal(res.status, 200, res.text)
  return /signed in \(([^)]*)\)/.exec(res.text)?.[1]
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** The same bytes in base64url with one spare trailing bit set: `Buffer` decodes both alike. */
const respell = (encoded: string): string => {
  assert.notEqual(encoded.length % 4, 0, 'needs spare bits')
  const last = B64URL.indexOf(encoded.at(-1) as string)
  const respelled = `${encoded.slice(0, -1)}${B64URL[last ^ 1]}`
  assert.deepEqual(Buffer.from(respelled, 'base64url'), Buffer.from(encoded, 'base64url'))
  return respelled
}

describe('hub dashboard sessions in a shared store', () => {
  let admin: Redis
  const prefixes: string[] = []
  const stores: RedisStore[] = []
  const hubs: RunningHub[] = []

  const sharedHub = async (prefix: string, url = REDIS_URL): Promise<RunningHub> => {
    const store = new RedisStore({ url, prefix, logger: new MemoryLogger(), maxReconnectDelay: 100, timeout: 400 })
    stores.push(store)
    const hub = await startHub({ store, jwt: { key: JWT_SECRET } })
    hubs.push(hub)
    return hub
  }

  before(async () => {
    admin = await inspector()
  })
  after(async () => {
    for (const hub of hubs) await hub.close()
    for (const store of stores) await store.close()
    for (const prefix of prefixes) await dropKeys(admin, prefix)
    admin.disconnect()
  })

  it('a sign-in on one hub is good on the others, survives a restart, and sign-out on any ends it on all', async () => {
    const prefix = testPrefix('hub-sessions')
    prefixes.push(prefix)
    const a = await sharedHub(prefix)
    const b = await sharedHub(prefix)
    const cookie = await signIn(a)
    assert.equal(await signedInAs(a, cookie), 'token')
    assert.equal(await signedInAs(b, cookie), 'token')
    // The API takes the session too, on either hub.
    await request(b.app).get('/hub/v1/stats').set('Cookie', cookie).expect(200)
    // Nothing in the store gives the cookie away: its id is kept hashed.
    const id = /^sqreen_hub=([A-Za-z0-9_-]{43})\./.exec(cookie)?.[1]
    assert.ok(id, cookie)
    const keys = await keysUnder(admin, prefix)
    assert.ok(keys.length >= 1, 'the session is recorded in the store')
    for (const key of keys) {
      assert.ok(!key.includes(id), key)
      assert.ok(!((await admin.getBuffer(key))?.toString('latin1') ?? '').includes(id), key)
    }

    // A hub started again on the same store knows the session.
    const c = await sharedHub(prefix)
    assert.equal(await signedInAs(c, cookie), 'token')

    // Sign-out on b ends the session on a and c too.
    const out = await request(b.app).post('/hub/logout').set('Cookie', cookie).expect(303)
    assert.equal(out.headers.location, '/hub/login')
    assert.equal(await signedInAs(a, cookie), undefined)
    assert.equal(await signedInAs(c, cookie), undefined)
    await request(a.app).get('/hub/v1/stats').set('Cookie', cookie).expect(401)
    // Other sessions live on.
    const other = await signIn(c)
    assert.equal(await signedInAs(a, other), 'token')
  })

  it('an edited cookie (subject, expiry, id) or one from another store opens nothing', async () => {
    const prefix = testPrefix('hub-sessions-edit')
    prefixes.push(prefix)
    const hub = await sharedHub(prefix)
    const exp = Math.floor(Date.now() / 1000) + 3600
    const jwt = await new SignJWT({ sub: 'alice', exp }).setProtectedHeader({ alg: 'HS256' }).sign(JWT_SECRET)
    const cookie = await signIn(hub, jwt)
    assert.equal(await signedInAs(hub, cookie), 'alice')
    const [, id, expiresAt, subject] = /^sqreen_hub=([^.]+)\.([^.]+)\.([^.]*)$/.exec(cookie) ?? []
    assert.ok(id && expiresAt && subject !== undefined, cookie)
    // Never past the JWT's own expiry.
    assert.ok(Number(expiresAt) <= exp * 1000, `${expiresAt} > ${exp * 1000}`)
    const edited = [
      `sqreen_hub=${id}.${expiresAt}.${Buffer.from('admin').toString('base64url')}`,
      `sqreen_hub=${id}.${Number(expiresAt) + 86_400_000}.${subject}`,
      `sqreen_hub=${id.slice(0, -1)}${id.endsWith('A') ? 'B' : 'A'}.${expiresAt}.${subject}`,
      `sqreen_hub=${id}`,
      `sqreen_hub=${id}.${expiresAt}`,
      'sqreen_hub=../../etc',
      // Another spelling of the same subject (base64url ignores spare trailing bits).
      `sqreen_hub=${id}.${expiresAt}.${respell(subject)}`,
    ]
    for (const bad of edited) assert.equal(await signedInAs(hub, bad), undefined, bad)
    // A hub on another store (another prefix) never saw the session.
    const elsewhere = testPrefix('hub-sessions-other')
    prefixes.push(elsewhere)
    assert.equal(await signedInAs(await sharedHub(elsewhere), cookie), undefined)
    // A hub with sessions of its own (its default MemoryStore) neither.
    const local = await startHub({ jwt: { key: JWT_SECRET } })
    hubs.push(local)
    assert.equal(await signedInAs(local, cookie), undefined)
    // The edits left the real session alone.
    assert.equal(await signedInAs(hub, cookie), 'alice')
  })

  it("writing to the store is not enough: a session is named by the hub's own secrets", async () => {
    const prefix = testPrefix('hub-sessions-forge')
    prefixes.push(prefix)
    const hub = await sharedHub(prefix)
    const store = stores.at(-1) as RedisStore
    // Whoever can write to the store (an application sharing the Redis server) sets a mark
    // for a cookie of their own making, named with some secret: only the hub's opens.
    const forge = async (secret: Buffer | undefined): Promise<string> => {
      assert.ok(secret)
      const id = randomBytes(32).toString('base64url')
      const expiresAt = Date.now() + 3_600_000
      const subject = 'forged-admin'
      const { key, field } = sessionNames(secret, id, expiresAt, subject)
      await store.run([{ op: 'claim', key, field, ttl: 3_600_000 }], Date.now())
      return `sqreen_hub=${id}.${expiresAt}.${Buffer.from(subject).toString('base64url')}`
    }
    const otherToken = 'another-hub-token-0123456789abcdefghijklmnop'
    for (const secret of [
      sessionSecret({ token: otherToken, jwt: undefined, secret: undefined }),
      sessionSecret({ token: undefined, jwt: undefined, secret: Buffer.from(HUB_TOKEN) }),
      Buffer.alloc(32),
    ]) {
      assert.equal(await signedInAs(hub, await forge(secret)), undefined)
    }
    // The control: named with the hub's own secrets, the same write opens the dashboard.
    const own = sessionSecret({
      token: HUB_TOKEN,
      jwt: {
        key: { alg: 'HS256', key: JWT_SECRET },
        jwksUrl: undefined,
        algorithms: ['HS256'],
        issuer: undefined,
        audience: undefined,
      },
      secret: undefined,
    })
    assert.equal(await signedInAs(hub, await forge(own)), 'forged-admin')

    // A hub on the same store with another token shares no session with this one.
    const cookie = await signIn(hub)
    const other = await startHub({ store, token: otherToken, jwt: { key: JWT_SECRET } })
    hubs.push(other)
    assert.equal(await signedInAs(other, cookie), undefined)
    assert.equal(await signedInAs(hub, cookie), 'token')
  })

  it('a hub with no secret of its own (a JWT public key only) keeps its sessions in its process', async () => {
    const prefix = testPrefix('hub-sessions-public')
    prefixes.push(prefix)
    const keys = ed25519()
    const store = new RedisStore({ url: REDIS_URL, prefix, logger: new MemoryLogger() })
    stores.push(store)
    const a = await startHub({ store, token: undefined, jwt: { key: keys.publicKey } })
    const b = await startHub({ store, token: undefined, jwt: { key: keys.publicKey } })
    hubs.push(a, b)
    const jwt = await new SignJWT({ sub: 'bob', exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'EdDSA' })
      .sign(keys.privateKey)
    const cookie = await signIn(a, jwt)
    assert.equal(await signedInAs(a, cookie), 'bob')
    assert.equal(await signedInAs(b, cookie), undefined)
    assert.deepEqual(await keysUnder(admin, prefix), [], 'nothing of a session in the store')
  })

  it('a session ends at its time (sessionTtl)', async () => {
    const prefix = testPrefix('hub-sessions-ttl')
    prefixes.push(prefix)
    const store = new RedisStore({ url: REDIS_URL, prefix, logger: new MemoryLogger() })
    stores.push(store)
    const hub = await startHub({ store, sessionTtl: '1s' })
    hubs.push(hub)
    const cookie = await signIn(hub)
    assert.equal(await signedInAs(hub, cookie), 'token')
    await new Promise((resolve) => setTimeout(resolve, 1200))
    assert.equal(await signedInAs(hub, cookie), undefined)
  })

  it('while the store is down nobody is signed in, sign-in and sign-out answer 503, and it all comes back', async () => {
    const redis = await RedisServer.start()
    try {
      const hub = await sharedHub(testPrefix('hub-sessions-outage'), redis.url)
      const cookie = await signIn(hub)
      assert.equal(await signedInAs(hub, cookie), 'token')
      await redis.stop()
      // Fail closed: the session cannot be checked, so it does not open the dashboard or the API.
      assert.equal(await signedInAs(hub, cookie), undefined)
      await request(hub.app).get('/hub/v1/stats').set('Cookie', cookie).expect(401)
      // The token itself still opens the API (it needs no store).
      await request(hub.app).get('/hub/v1/stats').set('Authorization', `Bearer ${HUB_TOKEN}`).expect(200)
      const login = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(503)
      assert.equal(login.headers['set-cookie'], undefined)
      assert.match(login.text, /store cannot be reached/)
      // Sign-out cannot end the recorded session: the cookie is kept so it can be tried again.
      const out = await request(hub.app).post('/hub/logout').set('Cookie', cookie).expect(503)
      assert.equal(out.headers['set-cookie'], undefined)
      // Logged once for the outage, counted each time.
      const logged = hub.logger.lines.filter((m) => m.startsWith('error') && m.includes('hub_session_store_failed'))
      assert.equal(logged.length, 1, JSON.stringify(hub.logger.lines))
      assert.ok(hub.counter('store_errors') >= 4, String(hub.counter('store_errors')))

      await redis.start()
      const store = stores.at(-1) as RedisStore
      await waitUntil(() => store.stats().state === 'up', 'the store to reconnect', 5000)
      // The server kept nothing (no persistence): the old session is gone, a new one works.
      assert.equal(await signedInAs(hub, cookie), undefined)
      const again = await signIn(hub)
      assert.equal(await signedInAs(hub, again), 'token')
    } finally {
      await redis.stop()
    }
  })
})
