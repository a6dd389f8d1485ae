/**
 * Batch claims at the edges, over real HTTP. A fractional `exp`: the verifier compares
 * whole seconds, so the batch stays acceptable until the second after `exp + tolerance`;
 * its `jti` must be remembered that long, in the hub's own replay cache and in a shared
 * store's claim (real Redis), or a replay in that last second is accepted. And `dropped`,
 * a number a key holder chooses: only a safe non-negative integer counts, capped, so
 * `hub.dropped_upstream` never becomes Infinity (which JSON writes as null).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { MAX_DROPPED_PER_BATCH } from '../lib/hub/ingest.js'
import { RedisStore } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'
import { dropKeys, inspector, REDIS_URL, testPrefix } from './helpers/redis.js'

const key = new TextEncoder().encode(HS_SECRET)
/** The hub's default clockTolerance, seconds. */
const TOLERANCE = 30

const sleepUntil = async (epochMs: number): Promise<void> => {
  const wait = epochMs - Date.now()
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
}

/**
 * Claims for a batch whose `exp + tolerance` falls 1 ms into second `S`, between one and
 * two seconds from now (so that a shared store's claim, at least a second long, would
 * have expired): `(exp + tolerance) * 1000` is `S * 1000 + 1`, yet the verifier accepts
 * the batch until `(S + 1) * 1000`.
 */
const fractionalExp = (): { S: number; iat: number; exp: number } => {
  const now = Date.now()
  const S = Math.ceil(now / 1000) + 1
  return { S, iat: Math.floor(now / 1000), exp: S - TOLERANCE + 0.001 }
}

const stats = async (hub: RunningHub): Promise<Record<string, unknown>> => {
  const res = await fetch(`${hub.base}/v1/stats`, { headers: { Authorization: `Bearer ${HUB_TOKEN}` } })
  assert.equal(res.status, 200)
  return ((await res.json()) as { counters: Record<string, unknown> }).counters
}

describe('hub claims: a fractional exp', () => {
  it('a replay in the last second a fractional exp leaves is refused (409), while a new batch is still accepted', async () => {
    const hub = await startHub()
    try {
      const { S, iat, exp } = fractionalExp()
      const batch = await signBatch([sampleEvent()], { key, iat, exp })
      assert.equal((await postBatch(hub.ingestUrl, batch)).status, 200)
      // Past (exp + tolerance) * 1000, before the verifier refuses the batch.
      await sleepUntil(S * 1000 + 20)
      const replay = await postBatch(hub.ingestUrl, batch)
      assert.ok(Date.now() < (S + 1) * 1000, 'the replay must land before the next second (a slow machine?)')
      assert.equal(replay.status, 409, JSON.stringify(replay.body))
      // The control: the verifier still accepts this exp, so only the replay cache stood in the way.
      const fresh = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key, iat, exp }))
      assert.equal(fresh.status, 200, JSON.stringify(fresh.body))
    } finally {
      await hub.close()
    }
  })

  it('so is one sent to another hub sharing the Redis store (the claim lives as long)', async () => {
    const prefix = testPrefix('hub-claims-exp')
    const redis = await inspector()
    const stores = [0, 1].map(() => new RedisStore({ url: REDIS_URL, prefix, logger: new MemoryLogger() }))
    const [a, b] = [
      await startHub({ store: stores[0] as RedisStore }),
      await startHub({ store: stores[1] as RedisStore }),
    ] as const
    try {
      const { S, iat, exp } = fractionalExp()
      const batch = await signBatch([sampleEvent()], { key, iat, exp })
      assert.equal((await postBatch(a.ingestUrl, batch)).status, 200)
      await sleepUntil(S * 1000 + 20)
      // Hub b has never seen it: only the claim in Redis can refuse it.
      const replay = await postBatch(b.ingestUrl, batch)
      assert.ok(Date.now() < (S + 1) * 1000, 'the replay must land before the next second (a slow machine?)')
      assert.equal(replay.status, 409, JSON.stringify(replay.body))
    } finally {
      await a.close()
      await b.close()
      for (const s of stores) await s.close()
      await dropKeys(redis, prefix)
      redis.disconnect()
    }
  })
})

describe('hub claims: dropped', () => {
  it('counts only a safe non-negative integer, capped, so the counter stays a finite number', async () => {
    const hub = await startHub()
    try {
      const post = async (dropped: number): Promise<void> => {
        const res = await postBatch(hub.ingestUrl, await signBatch([sampleEvent()], { key, dropped }))
        assert.equal(res.status, 200, JSON.stringify(res.body))
      }
      await post(7)
      assert.equal((await stats(hub))['hub.dropped_upstream'], 7)
      for (const ignored of [-3, 1.5, 2 ** 53, Number.MAX_VALUE]) await post(ignored)
      assert.equal((await stats(hub))['hub.dropped_upstream'], 7, 'unsafe or negative values count nothing')
      await post(Number.MAX_SAFE_INTEGER)
      assert.equal((await stats(hub))['hub.dropped_upstream'], 7 + MAX_DROPPED_PER_BATCH, 'capped')
      // And sent as raw JSON: 1e308 parses to an integer-valued double.
      const body = JSON.stringify({
        v: 2,
        iat: Math.floor(Date.now() / 1000),
        exp: Math.floor(Date.now() / 1000) + 60,
        jti: randomUUID(),
        dropped: 1,
        events: [sampleEvent()],
      }).replace('"dropped":1', '"dropped":1e308')
      const res = await postBatch(hub.ingestUrl, await signBatch([], { key, body }))
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const counter = (await stats(hub))['hub.dropped_upstream']
      assert.equal(counter, 7 + MAX_DROPPED_PER_BATCH, `hub.dropped_upstream is ${counter}`)
    } finally {
      await hub.close()
    }
  })
})
