/**
 * Replay protection across hub processes: two real hub routers (each on its own
 * Express app and HTTP port, each with its own RedisStore client) sharing one real
 * Redis at REDIS_URL under one key prefix, as the README's multi-process setup runs
 * them. A batch accepted by one hub is refused (409) by the other, and by a hub
 * started again on the same store; an event id carried by two different batches is
 * scored once; the same batch posted to both at the same moment is taken by exactly
 * one; while the store cannot be reached the hub answers 503 and scores nothing.
 * "Scored once" is checked against a control hub on its own memory store, given the
 * same batch once.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { batchKey, eventKey } from '../lib/hub/ingest.js'
import { type AuthEvent, RedisStore, type RiskSnapshot } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import {
  HS_SECRET,
  postBatch,
  type RunningHub,
  type SignedBatch,
  sampleEvent,
  signBatch,
  startHub,
} from './helpers/hub.js'
import { failOnUnhandledRejections } from './helpers/process.js'
import { waitUntil } from './helpers/receivers.js'
import { dropKeys, inspector, REDIS_URL, RedisServer, testPrefix } from './helpers/redis.js'

const key = new TextEncoder().encode(HS_SECRET)

failOnUnhandledRejections()

/** A brute force on one user: `n` failures from one IP, a second apart (enough for an alert at 12). */
const bruteForce = (userKey: string, n = 12): AuthEvent[] => {
  const start = Date.now() - n * 1000
  return Array.from({ length: n }, (_, i) =>
    sampleEvent({ userKey, loginKey: userKey, at: new Date(start + i * 1000).toISOString() }),
  )
}

/** What scoring left in a user's ledger, independent of when it is read. */
const ledger = (risk: RiskSnapshot): [string, number, number][] =>
  risk.entries.map((e) => [e.detection, e.points, e.at])

/** One hub on the shared Redis under `prefix`, with a RedisStore (a client) of its own. */
interface SharedHub {
  readonly hub: RunningHub
  readonly store: RedisStore
  close(): Promise<void>
}

const sharedHub = async (prefix: string, url = REDIS_URL): Promise<SharedHub> => {
  const store = new RedisStore({ url, prefix, logger: new MemoryLogger(), maxReconnectDelay: 100 })
  const hub = await startHub({ store })
  return {
    hub,
    store,
    close: async () => {
      await hub.close()
      await store.close()
    },
  }
}

/** Two hubs on one Redis prefix, and a control hub on a memory store of its own. */
const setup = async (
  what: string,
): Promise<{
  a: SharedHub
  b: SharedHub
  control: RunningHub
  prefix: string
  redis: Redis
  close(): Promise<void>
}> => {
  const prefix = testPrefix(`hub-replay-${what}`)
  const redis = await inspector()
  const a = await sharedHub(prefix)
  const b = await sharedHub(prefix)
  const control = await startHub()
  return {
    a,
    b,
    control,
    prefix,
    redis,
    close: async () => {
      await a.close()
      await b.close()
      await control.close()
      await dropKeys(redis, prefix)
      redis.disconnect()
    },
  }
}

/** The ledger the control hub (memory store) keeps after scoring `batch` once. */
const scoredOnce = async (
  control: RunningHub,
  batch: SignedBatch,
  userKey: string,
): Promise<[string, number, number][]> => {
  assert.equal((await postBatch(control.ingestUrl, batch)).status, 200)
  const once = ledger(await control.hub.risk(userKey))
  assert.ok(once.length > 0, 'the control scored the batch')
  return once
}

describe('hub replay protection across processes sharing a Redis store', () => {
  it('a batch accepted by hub A is refused by hub B (409 replayed); the user is scored once, one alert', async () => {
    const t = await setup('two-hubs')
    try {
      const events = bruteForce('login:two-hubs')
      const batch = await signBatch(events, { key })
      const first = await postBatch(t.a.hub.ingestUrl, batch)
      assert.equal(first.status, 200)
      assert.deepEqual(first.body, { accepted: 12, duplicates: 0, rejected: [] })

      const again = await postBatch(t.b.hub.ingestUrl, batch)
      assert.equal(again.status, 409)
      assert.deepEqual(again.body, { error: 'replayed', message: 'this batch (jti) was already received' })
      assert.equal(t.b.hub.counter('hub.accepted'), 0)
      assert.equal(t.b.hub.counter('hub.batches_refused'), 1)

      const once = await scoredOnce(t.control, batch, 'login:two-hubs')
      assert.deepEqual(ledger(await t.a.hub.hub.risk('login:two-hubs')), once)
      assert.deepEqual(ledger(await t.b.hub.hub.risk('login:two-hubs')), once)
      assert.equal(t.a.hub.alerts.length + t.b.hub.alerts.length, 1, 'one alert between the two hubs')

      // The marks live in the store under hub: keys, each with a TTL: the batch's until its exp
      // (+ clock tolerance), the events' at least two minutes.
      const jti = JSON.parse(String(batch.body)).jti as string
      const jtiTtl = await t.redis.pttl(`${t.prefix}{${batchKey(jti)}}`)
      assert.ok(jtiTtl > 0 && jtiTtl <= 91_000, `jti mark TTL ${jtiTtl}`)
      const eventTtl = await t.redis.pttl(`${t.prefix}{${eventKey(events[0]!.id)}}`)
      assert.ok(eventTtl > 110_000 && eventTtl <= 121_000, `event mark TTL ${eventTtl}`)
    } finally {
      await t.close()
    }
  })

  it('a batch re-posted to a hub started again on the same store (a restart) is refused', async () => {
    const t = await setup('restart')
    try {
      const batch = await signBatch(bruteForce('login:restart', 3), { key })
      assert.equal((await postBatch(t.a.hub.ingestUrl, batch)).status, 200)
      await t.a.close()
      const restarted = await sharedHub(t.prefix)
      try {
        const again = await postBatch(restarted.hub.ingestUrl, batch)
        assert.equal(again.status, 409)
        assert.equal(again.body.error, 'replayed')
        assert.equal(restarted.hub.counter('hub.accepted'), 0)
        assert.deepEqual(
          ledger(await restarted.hub.hub.risk('login:restart')),
          await scoredOnce(t.control, batch, 'login:restart'),
        )
      } finally {
        await restarted.close()
      }
    } finally {
      await t.close()
    }
  })

  it('an event id carried by two different batches to two hubs is scored once (a duplicate at the second)', async () => {
    const t = await setup('event-id')
    try {
      const shared = sampleEvent({ userKey: 'login:shared-event', loginKey: 'login:shared-event' })
      const other = sampleEvent({ userKey: 'login:other-event', loginKey: 'login:other-event' })
      const first = await postBatch(t.a.hub.ingestUrl, await signBatch([shared], { key }))
      assert.deepEqual(first.body, { accepted: 1, duplicates: 0, rejected: [] })
      // A new jti (as the forwarder's retry after a lost answer), the same event and a new one.
      const second = await postBatch(t.b.hub.ingestUrl, await signBatch([shared, other], { key }))
      assert.equal(second.status, 200)
      assert.deepEqual(second.body, { accepted: 1, duplicates: 1, rejected: [] })
      assert.equal(t.b.hub.counter('hub.duplicates'), 1)
      assert.equal((await t.b.hub.hub.risk('login:shared-event')).entries.length, 1)
      assert.equal((await t.a.hub.hub.risk('login:other-event')).entries.length, 1)
      // The same again, with the ids now known locally at B: still duplicates, no store needed for them.
      const third = await postBatch(t.b.hub.ingestUrl, await signBatch([shared, other], { key }))
      assert.deepEqual(third.body, { accepted: 0, duplicates: 2, rejected: [] })
      assert.equal((await t.a.hub.hub.risk('login:shared-event')).entries.length, 1)
    } finally {
      await t.close()
    }
  })

  it('the same batch posted to both hubs at the same moment is taken by exactly one', async () => {
    const t = await setup('concurrent')
    try {
      for (let round = 0; round < 5; round++) {
        const userKey = `login:race-${round}`
        const batch = await signBatch(bruteForce(userKey), { key })
        const answers = await Promise.all([postBatch(t.a.hub.ingestUrl, batch), postBatch(t.b.hub.ingestUrl, batch)])
        const statuses = answers.map((r) => r.status).sort()
        assert.deepEqual(statuses, [200, 409], `round ${round}: ${JSON.stringify(answers.map((r) => r.body))}`)
        assert.deepEqual(ledger(await t.a.hub.hub.risk(userKey)), await scoredOnce(t.control, batch, userKey))
      }
      assert.equal(t.a.hub.counter('hub.accepted') + t.b.hub.counter('hub.accepted'), 5 * 12)
      assert.equal(t.a.hub.alerts.length + t.b.hub.alerts.length, 5, 'one alert per attacked user')
    } finally {
      await t.close()
    }
  })

  it('a jti of any characters (lone surrogates, braces, colons) is claimed losslessly', async () => {
    const t = await setup('odd-jti')
    try {
      const odd = ['\ud800}{:é', '\ufffd}{:é', 'x'.repeat(128), `hub:jti64:${'a'.repeat(100)}`]
      for (const jti of odd) {
        const batch = await signBatch([sampleEvent()], { key, jti })
        assert.equal((await postBatch(t.a.hub.ingestUrl, batch)).status, 200, JSON.stringify(jti))
        assert.equal((await postBatch(t.b.hub.ingestUrl, batch)).status, 409, JSON.stringify(jti))
      }
      // '\ud800' and '\ufffd' (what UTF-8 would turn it into) are different batches.
      assert.equal(t.a.hub.counter('hub.accepted'), odd.length)
    } finally {
      await t.close()
    }
  })

  it('while the store cannot be reached the hub answers 503 store_unavailable and scores nothing; the retry is then scored once', async () => {
    const redis = await RedisServer.start()
    const prefix = testPrefix('hub-replay-outage')
    const a = await sharedHub(prefix, redis.url)
    const b = await sharedHub(prefix, redis.url)
    try {
      assert.equal((await postBatch(a.hub.ingestUrl, await signBatch([sampleEvent()], { key }))).status, 200)
      await redis.stop()
      await waitUntil(() => a.store.stats().state === 'down', 'the store to notice the outage', 5000)
      const events = bruteForce('login:outage', 3)
      const batch = await signBatch(events, { key })
      const res = await postBatch(a.hub.ingestUrl, batch)
      assert.equal(res.status, 503)
      assert.equal(res.body.error, 'store_unavailable')
      assert.equal(res.headers.get('retry-after'), null, 'the forwarder backs off by itself')
      assert.equal(a.hub.counter('hub.accepted'), 1, 'nothing of the batch scored')
      assert.ok(a.hub.counter('store_errors') >= 1)
      assert.equal(a.hub.logger.lines.filter((l) => l.includes('hub_replay_store_failed')).length, 1)

      await redis.start()
      await waitUntil(
        () => a.store.stats().state === 'up' && b.store.stats().state === 'up',
        'the stores to reconnect',
        5000,
      )
      // The refused bytes were not remembered as seen: taken once now, then refused by either hub.
      const retry = await postBatch(a.hub.ingestUrl, batch)
      assert.equal(retry.status, 200)
      assert.deepEqual(retry.body, { accepted: 3, duplicates: 0, rejected: [] })
      assert.equal((await postBatch(b.hub.ingestUrl, batch)).status, 409)
      assert.equal((await postBatch(a.hub.ingestUrl, batch)).status, 409)
      assert.equal((await a.hub.hub.risk('login:outage')).entries.length, 3)
    } finally {
      await a.close()
      await b.close()
      await redis.stop()
    }
  })
})
