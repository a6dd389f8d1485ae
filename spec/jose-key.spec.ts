/**
 * preparedJoseKey: an HS256 secret imported once (the same CryptoKey for every batch), a
 * failed import not kept, other keys passed through; what it prepares signs and verifies
 * with jose exactly as the raw secret does.
 */
import assert from 'node:assert/strict'
import { createSecretKey, generateKeyPairSync, type webcrypto } from 'node:crypto'
import { describe, it } from 'node:test'
import { FlattenedSign, flattenedVerify } from 'jose'
import { preparedJoseKey } from '../lib/jose-key.js'

const SECRET = new TextEncoder().encode('jose-key-spec-secret-0123456789abcdefghij')

describe('preparedJoseKey', () => {
  it('imports an HS256 secret once, as a CryptoKey jose signs and verifies with', async () => {
    const signing = preparedJoseKey('HS256', SECRET, 'sign')
    const first = (await signing()) as webcrypto.CryptoKey
    assert.equal(first.type, 'secret')
    assert.deepEqual([first.algorithm.name, first.usages, first.extractable], ['HMAC', ['sign'], false])
    assert.equal(await signing(), first, 'the same key for the next batch')
    const payload = new TextEncoder().encode('{"v":2}')
    const header = { alg: 'HS256', b64: false, crit: ['b64'] }
    const jws = await new FlattenedSign(payload).setProtectedHeader(header).sign(first)
    // Verified with the raw secret, and with a prepared verification key (from a KeyObject too).
    await flattenedVerify({ ...jws, payload }, SECRET, { algorithms: ['HS256'] })
    const verifying = preparedJoseKey('HS256', createSecretKey(SECRET), 'verify')
    await flattenedVerify({ ...jws, payload }, await verifying(), { algorithms: ['HS256'] })
    // A verification key cannot sign, nor a signing key verify: each is imported for its use.
    await assert.rejects(new FlattenedSign(payload).setProtectedHeader(header).sign(await verifying()))
  })

  it('does not keep a failed import: the next call tries again', async () => {
    // WebCrypto refuses an empty HMAC key.
    const broken = preparedJoseKey('HS256', new Uint8Array(0), 'sign')
    const first = broken()
    await assert.rejects(first)
    const second = broken()
    assert.notEqual(second, first)
    await assert.rejects(second)
  })

  it('passes any other key through as it is', async () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    assert.equal(await preparedJoseKey('EdDSA', privateKey, 'sign')(), privateKey)
  })
})
