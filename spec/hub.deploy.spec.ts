/**
 * The dashboard's sign-in as applications deploy the hub: behind an application-wide raw
 * or text parser for every type (which the hub already reads batches from), with a JWT
 * accepted only within the clock tolerance, and under a strict Content-Security-Policy
 * that refuses data: images (the page's icon).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import supertest from 'supertest'
import { MemoryStore, type Store } from '../lib/index.js'
import { attackOn, HS_SECRET, HUB_TOKEN, postBatch, signBatch, startHub } from './helpers/hub.js'

const JWT_SECRET = new TextEncoder().encode('hub-deploy-spec-jwt-secret-0123456789abcdef')

describe('hub: sign-in and pages as deployed', () => {
  for (const parser of ['raw', 'text'] as const) {
    it(`signs in behind an application-wide ${parser} parser for every type`, async () => {
      const hub = await startHub({}, { parser })
      try {
        const res = await supertest(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN })
        assert.equal(res.status, 303, res.text)
        assert.match(String(res.headers['set-cookie']), /sqreen_hub=/)
        const wrong = await supertest(hub.app).post('/hub/login').type('form').send({ token: 'nope' })
        assert.equal(wrong.status, 401)
      } finally {
        await hub.close()
      }
    })
  }

  it('a JWT past its exp, accepted only within the clock tolerance, is told expired instead of opening a dead session', async () => {
    const hub = await startHub({ jwt: { key: Buffer.from(JWT_SECRET) }, key: HS_SECRET })
    try {
      const now = Math.floor(Date.now() / 1000)
      const jwt = (exp: number) =>
        new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('ops').setExpirationTime(exp).sign(JWT_SECRET)
      const late = await supertest(hub.app)
        .post('/hub/login')
        .type('form')
        .send({ token: await jwt(now - 10) })
      assert.equal(late.status, 401)
      assert.match(late.text, /expired/)
      assert.equal(late.headers['set-cookie'], undefined)
      assert.equal(hub.counter('hub.logins_failed'), 1)
      const fresh = await supertest(hub.app)
        .post('/hub/login')
        .type('form')
        .send({ token: await jwt(now + 600) })
      assert.equal(fresh.status, 303)
    } finally {
      await hub.close()
    }
  })

  it("the page's icon is the hub's own (no data: URL a strict CSP would refuse), served without a session", async () => {
    const hub = await startHub({}, { mount: '/security/hub' })
    try {
      const page = await supertest(hub.app).get('/security/hub/login').expect(200)
      assert.match(page.text, /<link rel="icon" href="\/security\/hub\/static\/favicon\.ico">/)
      assert.doesNotMatch(page.text, /data:/)
      await supertest(hub.app).get('/security/hub/static/favicon.ico').expect(204)
    } finally {
      await hub.close()
    }
  })
})

describe('hub: lists over a store with round trips', () => {
  it('reads the users it must refresh many at a time, not one after the other', async () => {
    // Every read-only call waits 25 ms, as a round trip to a shared store would.
    const memory = new MemoryStore()
    let reads = 0
    let inFlight = 0
    let mostInFlight = 0
    const slow: Store = {
      run: async (ops, now) => {
        if (ops.every((op) => op.op === 'read')) {
          reads++
          inFlight++
          mostInFlight = Math.max(mostInFlight, inFlight)
          await new Promise((r) => setTimeout(r, 25))
          inFlight--
        }
        return memory.run(ops, now)
      },
      close: () => memory.close(),
    }
    const hub = await startHub({ store: slow })
    try {
      const events = Array.from({ length: 200 }, (_, i) => attackOn(`id:u${i}`))
      assert.equal((await postBatch(hub.ingestUrl, await signBatch(events, { key: HS_SECRET }))).status, 200)
      reads = 0
      const started = Date.now()
      const res = await supertest(hub.app).get('/hub/v1/users?limit=500').set('authorization', `Bearer ${HUB_TOKEN}`)
      const took = Date.now() - started
      assert.equal(res.status, 200)
      assert.equal(res.body.users.length, 200)
      assert.equal(reads, 200)
      // One after the other: 200 x 25 ms = 5 s.
      assert.ok(mostInFlight > 1 && took < 2_000, `${took} ms, at most ${mostInFlight} reads at once`)
    } finally {
      await hub.close()
    }
  })
})
