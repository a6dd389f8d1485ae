/**
 * `hub.close()` against batches in flight, over real HTTP. Once closing, the hub scores
 * nothing more: a batch that arrives is answered 503 `closing` with Retry-After (the
 * forwarder keeps it and retries), never 200 and then dropped behind the reorder
 * buffer's unref'd timer. A batch that got in before the close is scored (or held,
 * then flushed) before close() resolves, so the store is not released under it.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createDiagnostics } from '../lib/diagnostics.js'
import { MemoryStore } from '../lib/index.js'
import type { Store, StoreOp, StoreResult } from '../lib/store/store.js'
import { createForwarder } from '../lib/transport/forwarder.js'
import { MemoryLogger } from './helpers/apps.js'
import {
  attackOn,
  forwardConfig,
  HS_SECRET,
  postBatch,
  recordingFetch,
  sampleEvent,
  signBatch,
  startHub,
} from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const waitUntil = async (condition: () => boolean, what: string, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * A store several hubs could share (not a MemoryStore, so batches are claimed in it),
 * answering after `delayMs`: a batch is then still being scored when close() is called.
 * Counts the calls in flight. Not closed by the hub (it was given one).
 */
class SlowStore implements Store {
  readonly inner = new MemoryStore()
  inFlight = 0
  calls = 0
  constructor(readonly delayMs: number) {}
  async run(ops: readonly StoreOp[], now: number): Promise<StoreResult[]> {
    this.inFlight++
    this.calls++
    try {
      await sleep(this.delayMs)
      return await this.inner.run(ops, now)
    } finally {
      this.inFlight--
    }
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

describe('hub.close() and batches in flight', () => {
  it('answers batches that arrive while closing or after 503 closing with Retry-After, and close() stays idempotent', async () => {
    const store = new MemoryStore()
    const hub = await startHub({ store }, { reorder: true })
    try {
      const accepted = await postBatch(hub.ingestUrl, await signBatch([attackOn('id:before')], { key }))
      assert.equal(accepted.status, 200)

      const closing = hub.hub.close()
      // While close() runs: refused, not taken into a reorder buffer nobody flushes any more.
      const during = await postBatch(hub.ingestUrl, await signBatch([attackOn('id:during')], { key }))
      assert.equal(during.status, 503, JSON.stringify(during.body))
      assert.equal(during.body.error, 'closing')
      assert.equal(typeof during.body.message, 'string')
      assert.equal(during.headers.get('retry-after'), '5')
      assert.equal(during.headers.get('cache-control'), 'no-store')
      assert.strictEqual(hub.hub.close(), closing, 'the same close, not a second one')
      await closing

      const after = await postBatch(hub.ingestUrl, await signBatch([attackOn('id:after')], { key }))
      assert.equal(after.status, 503, JSON.stringify(after.body))
      assert.equal(after.body.error, 'closing')
      assert.equal(after.headers.get('retry-after'), '5')
      await hub.hub.close()

      // The batch accepted before the close was scored by it; the refused ones were not.
      assert.equal((await hub.hub.risk('id:before')).entries.length, 1)
      assert.equal((await hub.hub.risk('id:during')).entries.length, 0)
      assert.equal((await hub.hub.risk('id:after')).entries.length, 0)
    } finally {
      await hub.close()
      await store.close()
    }
  })

  it('the forwarder keeps a batch a closing hub refuses and retries it (not dropped)', async () => {
    const hub = await startHub()
    await hub.hub.close()
    const diag = createDiagnostics(new MemoryLogger())
    const recorder = recordingFetch()
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { closeTimeoutMs: 200 }),
      async () => recorder.fetch,
      diag,
    )
    try {
      forwarder.push(sampleEvent())
      await waitUntil(() => (diag.snapshot().counters['forward.retries'] ?? 0) >= 1, 'a retry to be scheduled')
      assert.equal(recorder.sent[0]?.status, 503)
      assert.equal(diag.snapshot().counters['forward.failed'] ?? 0, 0, 'not dropped as refused')
      assert.equal(forwarder.size, 1, 'kept for the retry')
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })

  it('close() waits for a batch being scored (reorderWindow 0) before it resolves', async () => {
    const store = new SlowStore(40)
    const hub = await startHub({ store })
    try {
      const events = [attackOn('id:inflight'), attackOn('id:inflight'), attackOn('id:inflight')]
      const answer = postBatch(hub.ingestUrl, await signBatch(events, { key }))
      // The batch's claim is in the store: it is being scored.
      await waitUntil(() => store.calls > 0, 'the batch to reach the store')
      await hub.hub.close()
      assert.equal(store.inFlight, 0, 'close() resolved while the batch was still writing to the store')
      const res = await answer
      assert.equal(res.status, 200, JSON.stringify(res.body))
      assert.equal(res.body.accepted, 3)
      assert.equal((await hub.hub.risk('id:inflight')).entries.length, 3)
    } finally {
      await hub.close()
      await store.close()
    }
  })

  it('a batch close() stopped waiting for scores its events itself instead of holding them behind a timer', async () => {
    const store = new SlowStore(300)
    const hub = await startHub({ store, delivery: { closeTimeout: 50 } }, { reorder: true })
    try {
      const answer = postBatch(hub.ingestUrl, await signBatch([attackOn('id:straggler')], { key }))
      await waitUntil(() => store.calls > 0, 'the batch to reach the store')
      await hub.hub.close()
      assert.ok(
        hub.logger.lines.some((l) => l.includes('hub_close_timeout')),
        'close() gave up waiting',
      )
      assert.equal((await answer).status, 200)
      // Read before the reorder window (2 s) could have released it on its own.
      assert.equal((await hub.hub.risk('id:straggler')).entries.length, 1, 'the straggler was held, not scored')
    } finally {
      await hub.close()
      await store.close()
    }
  })

  it('close() scores what a batch in progress holds for reordering (flushed after it, not left behind a timer)', async () => {
    const store = new SlowStore(40)
    const hub = await startHub({ store }, { reorder: true })
    try {
      const answer = postBatch(hub.ingestUrl, await signBatch([attackOn('id:held')], { key }))
      await waitUntil(() => store.calls > 0, 'the batch to reach the store')
      await hub.hub.close()
      // Read before the reorder window (2 s) could have released it on its own.
      assert.equal((await hub.hub.risk('id:held')).entries.length, 1, 'the held event was not scored by close()')
      assert.equal((await answer).status, 200)
    } finally {
      await hub.close()
      await store.close()
    }
  })
})
