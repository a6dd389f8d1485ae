/**
 * What one batch may do to the others sharing its script call, on the real Redis: batches
 * share calls, Redis runs one script at a time and does not roll back a script that fails
 * part-way. A review found that a few large batches in one turn overflowed the call stack
 * in a callback (the process ended), and that one batch with a TTL past Redis's range made
 * the batches sharing its call fail or half-apply.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { RedisStore, type StoreOp } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import { failOnUnhandledRejections } from './helpers/process.js'
import { RedisServer } from './helpers/redis.js'

failOnUnhandledRejections()

const claims = (n: number, tag: string): StoreOp[] =>
  Array.from({ length: n }, (_, i) => ({ op: 'claim', key: `id:${tag}-${i}`, field: 'once:x', ttl: 60_000 }))

/** A brute-force entry for `id:good`, once per minute (its mark), against `thresholds`. */
const bruteForceScore = (now: number, thresholds: { level: number; field: string; ttl: number }[]): StoreOp => ({
  op: 'score',
  key: 'id:good',
  field: 'ledger',
  entries: [{ entry: { detection: 'brute_force', points: 15, at: now }, once: { field: 'once:bf', ttl: 60_000 } }],
  keepSince: now - 60_000,
  max: 256,
  ttl: 3_600_000,
  windowSince: now - 60_000,
  thresholds,
})

describe('RedisStore: one batch cannot break the others', () => {
  // A server of this spec's own: these calls are heavy on purpose, and CI runs spec files
  // side by side against the shared one.
  let server: RedisServer
  let store: RedisStore

  before(async () => {
    server = await RedisServer.start()
    store = new RedisStore({ url: server.url, prefix: 'limits:', logger: new MemoryLogger(), timeout: 30_000 })
  })
  after(async () => {
    await store.close()
    await server.stop()
  })

  it('batches of 132,000 ops in one turn are split into calls and all applied (the process used to end)', async () => {
    const now = Date.now()
    // One call used to carry them all: 132,000 keys spread into evalsha overflowed the call
    // stack inside a nextTick callback. Each now goes in a call of its own (over 4,000 ops).
    const runs = Array.from({ length: 8 }, (_, b) => store.run(claims(16_500, `big${b}`), now))
    const small = store.run([{ op: 'marked', key: 'id:big0-0', field: 'once:x' }], now)
    const results = await Promise.all(runs)
    for (const r of results) assert.equal(r.filter((x) => x === true).length, 16_500)
    assert.equal((await small).length, 1)
    assert.equal(store.stats().failed, 0)
  })

  it('a batch past the size limit is refused alone; one with a TTL out of range too, and the batch sharing its turn applies whole', async () => {
    const now = Date.now()
    await assert.rejects(store.run(claims(50_001, 'huge'), now), /at most 50000 ops/)
    const poisoned = store.run([{ op: 'claim', key: 'id:poison', field: 'once:x', ttl: 1e20 }], now)
    const good = store.run([bruteForceScore(now, [{ level: 10, field: 'alert:10', ttl: 60_000 }])], now)
    await assert.rejects(poisoned, /ttl must be a positive number of ms/)
    const [score] = (await good) as unknown as [{ sum: number; crossed: number[] }]
    assert.equal(score.sum, 15)
    assert.deepEqual(score.crossed, [10])
    // Applied whole: the once mark is set, so the same detection does not add again.
    const [again] = (await store.run([bruteForceScore(now, [])], now)) as unknown as [{ sum: number }]
    assert.equal(again.sum, 15)
  })

  it('long windows the options allow still score (a trigger within 4,000 days)', async () => {
    const now = Date.now()
    const [score] = (await store.run(
      [bruteForceScore(now, [{ level: 10, field: 'alert:10', ttl: 4_000 * 86_400_000 }])],
      now,
    )) as unknown as [{ sum: number }]
    assert.ok(score.sum >= 15)
  })

  it('a score op with more than 1,000 entries is refused (the script inserts them in order: Redis would be held)', async () => {
    const now = Date.now()
    const entries = Array.from({ length: 1_001 }, (_, i) => ({ entry: { detection: 'x', points: 1, at: now - i } }))
    await assert.rejects(
      store.run(
        [
          {
            op: 'score',
            key: 'id:many',
            field: 'ledger',
            entries,
            keepSince: 0,
            max: 256,
            ttl: 60_000,
            windowSince: 0,
            thresholds: [],
          },
        ],
        now,
      ),
      /at most 1000 entries/,
    )
  })
})
