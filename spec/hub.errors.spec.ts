/**
 * Requests Express itself refuses inside the hub's router (a malformed `%` escape in a
 * URL parameter makes its router throw before any handler runs, the authentication
 * included): the hub answers a plain 400 with its own headers (JSON under /v1; the
 * dashboard's pages have no path parameter) and nothing about the error (no stack, no
 * message), signed in or not.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import request from 'supertest'
import { HUB_TOKEN, type RunningHub, startHub } from './helpers/hub.js'

const hubHeaders = (res: request.Response): void => {
  assert.equal(res.headers['cache-control'], 'no-store')
  assert.equal(res.headers['x-content-type-options'], 'nosniff')
  assert.equal(res.headers['x-frame-options'], 'DENY')
  assert.equal(res.headers['referrer-policy'], 'no-referrer')
  assert.match(String(res.headers['content-security-policy']), /default-src 'none'/)
}

const saysNothing = (text: string): void => {
  for (const leak of [/URIError/i, /decode/i, /\bat [\w.<>]+ \(/, /node_modules/, /%ZZ/]) {
    assert.doesNotMatch(text, leak)
  }
}

const signIn = async (hub: RunningHub): Promise<string> => {
  const res = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
  return String((res.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string
}

describe('hub: malformed URLs', () => {
  it("a user page whose key has a malformed escape: the sign-in page first, then a plain 'No such user'", async () => {
    // The dashboard takes a user's key in the query (no path parameter for Express to decode
    // and throw on): a malformed escape there is just a key nobody has.
    const hub = await startHub()
    try {
      const anonymous = await request(hub.app).get('/hub/user?key=%ZZ').expect(303)
      assert.equal(anonymous.headers.location, '/hub/login')
      hubHeaders(anonymous)

      const signedIn = await request(hub.app)
        .get('/hub/user?key=%ZZ')
        .set('Cookie', await signIn(hub))
      assert.equal(signedIn.status, 404)
      assert.match(String(signedIn.headers['content-type']), /^text\/html/)
      hubHeaders(signedIn)
      saysNothing(signedIn.text)
      assert.match(signedIn.text, /No such user/)
    } finally {
      await hub.close()
    }
  })

  it('an API URL with a malformed escape gets a plain JSON 400 with the hub headers (and 401 first without a token)', async () => {
    const hub = await startHub()
    try {
      const anonymous = await request(hub.app).get('/hub/v1/users/%ZZ')
      assert.equal(anonymous.status, 401)
      assert.deepEqual(Object.keys(anonymous.body), ['error', 'message'])

      const res = await request(hub.app).get('/hub/v1/users/%ZZ').set('Authorization', `Bearer ${HUB_TOKEN}`)
      assert.equal(res.status, 400)
      assert.match(String(res.headers['content-type']), /^application\/json/)
      assert.deepEqual(res.body, { error: 'bad_request' })
      hubHeaders(res)
      saysNothing(res.text)
      assert.equal(hub.logger.lines.length, 0, 'a client error is not logged as a hub failure')
    } finally {
      await hub.close()
    }
  })
})
