/**
 * Rotating the batch key without losing batches: a hub given `key: [newKey, oldKey]`
 * accepts batches signed with either while the forwarders are redeployed one by one,
 * counts those only the old key verifies (`hub.batches_older_key`, the signal that the
 * old key can go), and refuses a key it does not hold with the same answers as with one
 * key. Real forwarding apps (sqreenAuth({ forward })) and hand-signed batches over HTTP.
 */
import assert from 'node:assert/strict'
import type { KeyObject } from 'node:crypto'
import { describe, it } from 'node:test'
import { MAX_BATCH_KEYS } from '../lib/hub/options.js'
import { SqreenAuthError, sqreenAuth, sqreenHub } from '../lib/index.js'
import { variants } from './helpers/apps.js'
import {
  ed25519,
  HS_SECRET,
  HUB_TOKEN,
  postBatch,
  recordingFetch,
  sampleEvent,
  signBatch,
  startHub,
} from './helpers/hub.js'
import { alertApp, failLogins, serve, USERS, waitUntil } from './helpers/receivers.js'

const NEW_SECRET = 'hub-spec-rotated-secret-9876543210-abcdefghij'
const OTHER_SECRET = 'hub-spec-somebody-elses-secret-0123456789-abc'
const variant = variants[0]!
const jane = USERS[0]!

/** A real app that forwards its logins with `key` (scoring only at the hub). */
const forwardingApp = (url: string, key: string | Buffer | KeyObject) =>
  alertApp(variant, {
    scoring: false,
    fetch: recordingFetch().fetch,
    forward: { url, key, flushInterval: 20, baseDelay: 20, maxDelay: 200 },
  })

describe('hub batch key rotation', () => {
  it('accepts batches from forwarders on the new and on the old key, and counts only the old key', async () => {
    const hub = await startHub({ key: [NEW_SECRET, HS_SECRET] })
    const rolled = forwardingApp(hub.ingestUrl, NEW_SECRET)
    const pending = forwardingApp(hub.ingestUrl, HS_SECRET)
    const apps = [await serve(rolled.app), await serve(pending.app)]
    try {
      await failLogins(apps[0]!.url, jane.username, 3, { ip: '198.51.100.30' })
      await failLogins(apps[1]!.url, jane.username, 2, { ip: '198.51.100.31' })
      await rolled.sqreen.close()
      await pending.sqreen.close()
      await waitUntil(() => hub.counter('hub.accepted') === 5, 'the hub to accept the 5 events of both apps')
      assert.equal(hub.counter('hub.batches_refused'), 0)
      // Batches: at least one from each app; only the old key's are counted as such.
      const oldKeyBatches = pending.sqreen.stats().counters['forward.batches'] ?? 0
      assert.ok(oldKeyBatches >= 1)
      assert.equal(hub.counter('hub.batches_older_key'), oldKeyBatches)
      assert.equal(hub.counter('hub.batches'), oldKeyBatches + (rolled.sqreen.stats().counters['forward.batches'] ?? 0))
    } finally {
      for (const app of apps) await app.close()
      await hub.close()
    }
  })

  it('mixes algorithms: an Ed25519 public key and an HS256 secret each verify their own batches', async () => {
    const pair = ed25519()
    const hub = await startHub({ key: [pair.publicKey, HS_SECRET] })
    try {
      const signedEd = await signBatch([sampleEvent()], { key: pair.privateKey, alg: 'EdDSA' })
      const signedHs = await signBatch([sampleEvent()], { key: HS_SECRET })
      assert.equal((await postBatch(hub.ingestUrl, signedEd)).status, 200)
      assert.equal(hub.counter('hub.batches_older_key'), 0)
      assert.equal((await postBatch(hub.ingestUrl, signedHs)).status, 200)
      assert.equal(hub.counter('hub.batches_older_key'), 1)
      assert.equal(hub.counter('hub.accepted'), 2)
    } finally {
      await hub.close()
    }
  })

  it('refuses a key it does not hold as with one key: bad_signature when an algorithm matches, alg_not_allowed when none does', async () => {
    const hub = await startHub({ key: [NEW_SECRET, HS_SECRET] })
    const pair = ed25519()
    try {
      const stranger = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key: OTHER_SECRET }))
      assert.equal(stranger.status, 401)
      assert.equal(stranger.body.error, 'bad_signature')
      const otherAlg = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent()], { key: pair.privateKey, alg: 'EdDSA' }),
      )
      assert.equal(otherAlg.status, 401)
      assert.equal(otherAlg.body.error, 'alg_not_allowed')
      // Mixed keys: an HS256 batch with a wrong secret is a bad signature, although the last
      // key tried (Ed25519) refused it for its algorithm.
      const mixed = await startHub({ key: [HS_SECRET, pair.publicKey] })
      try {
        const wrong = await postBatch(mixed.ingestUrl, await signBatch([sampleEvent()], { key: OTHER_SECRET }))
        assert.equal(wrong.status, 401)
        assert.equal(wrong.body.error, 'bad_signature')
      } finally {
        await mixed.close()
      }
      // A JWS that is wrong in itself is refused at once, whatever the keys.
      const encoded = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent()], { key: HS_SECRET, header: { b64: undefined, crit: undefined } }),
      )
      assert.equal(encoded.status, 401)
      assert.equal(encoded.body.error, 'bad_claim')
      assert.equal(hub.counter('hub.accepted'), 0)
      assert.equal(hub.counter('hub.batches_older_key'), 0)
    } finally {
      await hub.close()
    }
  })

  it('a replayed batch stays refused when another key verifies it (the jti is the batch, not the key)', async () => {
    const hub = await startHub({ key: [NEW_SECRET, HS_SECRET] })
    try {
      const batch = await signBatch([sampleEvent()], { key: HS_SECRET })
      assert.equal((await postBatch(hub.ingestUrl, batch)).status, 200)
      assert.equal((await postBatch(hub.ingestUrl, batch)).status, 409)
      assert.equal(hub.counter('hub.accepted'), 1)
    } finally {
      await hub.close()
    }
  })

  it('refuses key lists that cannot be meant, at setup, naming the key', () => {
    const hub = (key: unknown) => () => sqreenHub({ key: key as string, token: HUB_TOKEN })
    const refused = (key: unknown, message: RegExp): void =>
      assert.throws(hub(key), (err: unknown) => {
        assert.ok(err instanceof SqreenAuthError)
        assert.equal(err.code, 'ERR_SQREEN_HUB_KEY')
        assert.match(err.message, message)
        return true
      })
    refused([], /1 to 4 keys, got 0/)
    refused(
      Array.from({ length: MAX_BATCH_KEYS + 1 }, (_, i) => `${HS_SECRET}-${i}`),
      new RegExp(`1 to ${MAX_BATCH_KEYS} keys, got ${MAX_BATCH_KEYS + 1}`),
    )
    refused([NEW_SECRET, 'short'], /"key\[1\]" is an HS256 secret of 5 bytes/)
    refused([NEW_SECRET, HS_SECRET, NEW_SECRET], /"key\[2\]" is the same key as "key\[0\]"/)
    // A hole in the list (\`[, key]\`) is a missing key, not a skipped one.
    // biome-ignore lint/suspicious/noSparseArray: the sparse array is the case under test
    refused([, NEW_SECRET], /"key\[0\]" must be an HS256 secret/)
    const pair = ed25519()
    refused([pair.publicKey, pair.publicPem], /"key\[1\]" is the same key as "key\[0\]"/)
    // Every batch key must differ from the API token, as a single key must.
    assert.throws(
      () => sqreenHub({ key: [NEW_SECRET, HUB_TOKEN], token: HUB_TOKEN }),
      /"key\[1\]" \(the forwarders' batch secret\) and "token"/,
    )
    // One key in an array is the same as the key alone.
    sqreenHub({ key: [HS_SECRET], token: HUB_TOKEN })
      .close()
      .catch(() => {})
  })
})

describe('keys read from PEM files as Buffers', () => {
  it('the hub takes a public key PEM Buffer (readFileSync without an encoding) as the key it is, never as an HS256 secret', async () => {
    const pair = ed25519()
    const pemBuffer = Buffer.from(`\n${pair.publicPem}`)
    const hub = await startHub({ key: pemBuffer })
    try {
      // The forgery the old reading allowed: HS256 over the batch with the public key's bytes as the secret.
      const forged = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent()], { key: new Uint8Array(pemBuffer) }),
      )
      assert.equal(forged.status, 401)
      assert.equal(forged.body.error, 'alg_not_allowed')
      const genuine = await signBatch([sampleEvent()], { key: pair.privateKey, alg: 'EdDSA' })
      assert.equal((await postBatch(hub.ingestUrl, genuine)).status, 200)
      assert.equal(hub.counter('hub.accepted'), 1)
    } finally {
      await hub.close()
    }
    // The same for a key of a rotation and for jwt.key.
    assert.throws(
      () => sqreenHub({ key: [HS_SECRET, Buffer.from('-----BEGIN PUBLIC KEY-----\nnot a key\n')], token: HUB_TOKEN }),
      /"key\[1\]" looks like a PEM/,
    )
    assert.throws(
      () => sqreenHub({ key: HS_SECRET, jwt: { key: Buffer.from('-----BEGIN PUBLIC KEY-----\nnot a key\n') } }),
      /"jwt.key" looks like a PEM/,
    )
  })

  it('a forwarder takes a private key PEM Buffer as its Ed25519 key, and the hub accepts what it signs', async () => {
    const pair = ed25519()
    const hub = await startHub({ key: pair.publicKey })
    const h = forwardingApp(hub.ingestUrl, Buffer.from(pair.privatePem) as unknown as string)
    const app = await serve(h.app)
    try {
      await failLogins(app.url, jane.username, 2, { ip: '198.51.100.32' })
      await h.sqreen.close()
      await waitUntil(() => hub.counter('hub.accepted') === 2, 'the hub to accept the 2 events')
      assert.equal(hub.counter('hub.batches_refused'), 0)
    } finally {
      await app.close()
      await hub.close()
    }
    // A public key PEM Buffer is refused as a forward.key, as the string is.
    assert.throws(
      () => sqreenAuth({ forward: { url: 'http://127.0.0.1:1/v1/events', key: Buffer.from(pair.publicPem) } }),
      /public key PEM/,
    )
  })
})
