/**
 * Batch bodies are copied into buffers the hub reuses (lib/hub/body-pool.ts: a fresh
 * 270 KB buffer per batch cost more in page faults than the copy). What must hold: a
 * buffer is reused only once its batch is done with it, so batches of every size, one
 * after another and at the same time, each verify and are scored with their own events;
 * the pool keeps no more than its bound and ignores buffers it did not hand out.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import request from 'supertest'
import { BodyPool } from '../lib/hub/body-pool.js'
import { HS_SECRET, HUB_TOKEN, postBatch, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const BEARER = { Authorization: `Bearer ${HUB_TOKEN}` }

const chunksOf = (text: string, size: number): Buffer[] => {
  const bytes = Buffer.from(text)
  const out: Buffer[] = []
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size))
  return out
}

describe('BodyPool', () => {
  it('copies the chunks, and hands a buffer given back to the next body that fits', () => {
    const pool = new BodyPool(1 << 20)
    const first = pool.take(chunksOf('a'.repeat(70_000), 4096), 70_000)
    assert.equal(first.toString(), 'a'.repeat(70_000))
    pool.give(first)
    const second = pool.take(chunksOf('b'.repeat(1000), 300), 1000)
    assert.equal(second.buffer, first.buffer, 'the idle buffer is reused')
    assert.equal(second.length, 1000)
    assert.equal(second.toString(), 'b'.repeat(1000))
    // While `second` is out, a new body gets another buffer.
    const third = pool.take(chunksOf('c'.repeat(10), 3), 10)
    assert.notEqual(third.buffer, second.buffer)
    assert.equal(second.toString(), 'b'.repeat(1000), 'a body taken is not touched by the next take')
  })

  it('ignores a buffer it did not hand out, and a second give of the same body', () => {
    const pool = new BodyPool(1 << 20)
    const foreign = Buffer.alloc(100_000)
    pool.give(foreign)
    assert.notEqual(pool.take([Buffer.from('x')], 1).buffer, foreign.buffer)
    const body = pool.take([Buffer.from('y')], 1)
    pool.give(body)
    pool.give(body)
    const a = pool.take([Buffer.from('1')], 1)
    const b = pool.take([Buffer.from('2')], 1)
    assert.notEqual(a.buffer, b.buffer, 'given twice, still handed out once')
    assert.equal(a.toString() + b.toString(), '12')
  })

  it('keeps idle buffers up to its bound only', () => {
    const pool = new BodyPool(150_000)
    const taken = [1, 2, 3].map((n) => pool.take([Buffer.from(String(n))], 1))
    for (const body of taken) pool.give(body)
    // 64 KiB each: two fit under 150,000 bytes, the third was dropped.
    const again = [1, 2, 3].map((n) => pool.take([Buffer.from(String(n))], 1))
    const reused = again.filter((body) => taken.some((t) => t.buffer === body.buffer))
    assert.equal(reused.length, 2)
  })
})

describe('hub: reused body buffers over HTTP', () => {
  /** A batch of `n` events for `user`, each with its own id. */
  const batchFor = (user: string, n: number) =>
    signBatch(
      Array.from({ length: n }, () =>
        sampleEvent({
          id: randomUUID(),
          identity: { login: user },
          userKey: `login:${user}`,
          loginKey: `login:${user}`,
        }),
      ),
      { key: HS_SECRET },
    )

  it('scores every batch with its own events, in turn and at the same time, small and large', async () => {
    const hub = await startHub({ limits: { events: 1000 } })
    try {
      // Large (about 250 KB), then small, then larger: a reused buffer is longer than the body.
      const sizes = [400, 3, 600, 1, 450]
      for (const [i, n] of sizes.entries()) {
        const answer = await postBatch(hub.ingestUrl, await batchFor(`seq${i}`, n))
        assert.equal(answer.status, 200, JSON.stringify(answer.body))
        assert.equal(answer.body.accepted, n)
      }
      // Eight at once (the hub scores four at a time: the others may be told to retry).
      const concurrent = await Promise.all(
        [500, 2, 300, 7, 450, 1, 250, 60].map(async (n, i) => ({
          n,
          user: `par${i}`,
          answer: await postBatch(hub.ingestUrl, await batchFor(`par${i}`, n)),
        })),
      )
      let scored = 0
      for (const { n, user, answer } of concurrent) {
        if (answer.status === 503) continue
        assert.equal(answer.status, 200, JSON.stringify(answer.body))
        assert.equal(answer.body.accepted, n)
        const view = await request(hub.app)
          .get(`/hub/v1/users/${encodeURIComponent(`login:${user}`)}`)
          .set(BEARER)
          .expect(200)
        assert.equal(view.body.failed, n, `${user}: its own events, all of them`)
        scored++
      }
      assert.ok(scored >= 4, `at least the first four batches were scored (${scored})`)
      for (const [i, n] of sizes.entries()) {
        const view = await request(hub.app)
          .get(`/hub/v1/users/${encodeURIComponent(`login:seq${i}`)}`)
          .set(BEARER)
          .expect(200)
        assert.equal(view.body.failed, n)
      }
      assert.equal(hub.counter('hub.batches_refused'), 0)
    } finally {
      await hub.close()
    }
  })
})
