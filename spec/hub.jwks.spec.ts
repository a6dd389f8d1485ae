/**
 * The hub's API and dashboard behind an identity provider's key set (`jwt.jwksUrl`): a
 * provider on 127.0.0.1 serving a JWKS, JWTs signed by it with jose. Its key rotation needs
 * no change at the hub; what the set does not vouch for (another key, a shared secret,
 * alg none, a set that cannot be fetched) opens nothing, and the hub stays up.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { JWKS_COOLDOWN_MS } from '../lib/hub/auth.js'
import { SqreenAuthError, sqreenHub } from '../lib/index.js'
import { HS_SECRET, startHub } from './helpers/hub.js'

const ISSUER = 'https://idp.example'
const AUDIENCE = 'sqreen-hub'

/** An identity provider's key set, served on 127.0.0.1; `keys` may change (a rotation). */
const provider = async () => {
  const state = { keys: [] as JWK[], fetches: 0, down: false }
  const server: Server = createServer((_req, res) => {
    state.fetches++
    if (state.down) {
      res.statusCode = 503
      return void res.end()
    }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: state.keys }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  const key = async (kid: string, alg: 'RS256' | 'ES256' = 'RS256') => {
    const pair = await generateKeyPair(alg)
    const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' }
    const sign = (claims: Record<string, unknown> = {}, sub = 'alice@idp') =>
      new SignJWT(claims)
        .setProtectedHeader({ alg, kid })
        .setSubject(sub)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(pair.privateKey)
    return { jwk, sign }
  }
  return { state, url, key, close: () => new Promise<void>((r) => server.close(() => r())) }
}

const users = (base: string, token: string) =>
  fetch(`${base}/v1/users`, { headers: { authorization: `Bearer ${token}` } })

describe('hub: JWTs from an identity provider key set (jwt.jwksUrl)', () => {
  it("verifies the provider's tokens, follows its key rotation, and refuses what it does not vouch for", async () => {
    const idp = await provider()
    const first = await idp.key('k1')
    idp.state.keys = [first.jwk]
    const hub = await startHub({ token: undefined, jwt: { jwksUrl: idp.url, issuer: ISSUER, audience: AUDIENCE } })
    try {
      assert.equal((await users(hub.base, await first.sign())).status, 200)
      // Cached: a second token costs no fetch.
      assert.equal((await users(hub.base, await first.sign({}, 'bob@idp'))).status, 200)
      assert.equal(idp.state.fetches, 1)

      // The provider rotates: a new key, tokens signed with it. The hub fetches the set again
      // for the kid it does not hold (at most once per cooldown), with no change of its own.
      const second = await idp.key('k2', 'ES256')
      idp.state.keys = [second.jwk, first.jwk]
      await new Promise((r) => setTimeout(r, JWKS_COOLDOWN_MS + 100))
      assert.equal((await users(hub.base, await second.sign())).status, 200)
      assert.equal(idp.state.fetches, 2)

      // Not vouched for: a key the set does not hold (same kid, another key), an HS256 token
      // (a shared secret is never taken from a key set), the wrong audience.
      const impostor = await idp.key('k1')
      assert.equal((await users(hub.base, await impostor.sign())).status, 401)
      const hs = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('mallory')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(HS_SECRET))
      assert.equal((await users(hub.base, hs)).status, 401)
      const elsewhere = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(ISSUER)
        .setAudience('another-app')
        .setExpirationTime('5m')
        .sign((await generateKeyPair('RS256')).privateKey)
      assert.equal((await users(hub.base, elsewhere)).status, 401)
    } finally {
      await hub.close()
      await idp.close()
    }
  })

  it('a key set that cannot be fetched refuses the token (401), and the hub keeps answering', async () => {
    const idp = await provider()
    const signer = await idp.key('k1')
    idp.state.keys = [signer.jwk]
    idp.state.down = true
    const hub = await startHub({ token: undefined, jwt: { jwksUrl: idp.url, issuer: ISSUER, audience: AUDIENCE } })
    try {
      assert.equal((await users(hub.base, await signer.sign())).status, 401)
      assert.equal((await fetch(`${hub.base}/login`)).status, 200)
    } finally {
      await hub.close()
      await idp.close()
    }
  })

  it('refuses at setup what cannot be meant', () => {
    const fails = (jwt: unknown, says: RegExp) =>
      assert.throws(
        () => sqreenHub({ key: HS_SECRET, jwt: jwt as never }),
        (err: unknown) =>
          err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_HUB_AUTH' && says.test(err.message),
      )
    fails({ jwksUrl: 'http://idp.example/jwks.json' }, /https URL/)
    fails({ jwksUrl: 'not a url' }, /https URL/)
    fails({ key: 'x'.repeat(40), jwksUrl: 'https://idp.example/jwks.json' }, /one of the two/)
    fails({}, /one of the two/)
    fails({ jwksUrl: 'https://idp.example/jwks.json', algorithms: ['HS256'] }, /public-key algorithms/)
    fails({ key: 'x'.repeat(40), algorithms: ['RS256'] }, /goes with "jwt.jwksUrl"/)
    sqreenHub({ key: HS_SECRET, jwt: { jwksUrl: 'https://idp.example/jwks.json' } })
      .close()
      .catch(() => {})
  })
})
