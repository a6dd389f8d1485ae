/**
 * Forwarders against a busy hub. The hub answers every forwarder the same fixed
 * `503 busy` with `Retry-After: 1`; forwarders that obeyed it exactly would all come
 * back in the same instant and find it busy again. Each waits at least what the hub
 * asked, plus a random share of its backoff, so they come back spread out. The busy
 * hub is a local HTTP server that answers as the hub's router does when busy.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { describe, it } from 'node:test'
import express from 'express'
import { createDiagnostics } from '../lib/diagnostics.js'
import { sqreenHub } from '../lib/index.js'
import { nodeFetch } from '../lib/notify/http.js'
import { createForwarder, type Forwarder, retryAfterWait } from '../lib/transport/forwarder.js'
import { MemoryLogger } from './helpers/apps.js'
import { forwardConfig, HS_SECRET, sampleEvent } from './helpers/hub.js'
import { type ReceivedRequest, SlackReceiver, waitUntil } from './helpers/receivers.js'

const BUSY = {
  status: 503,
  headers: { 'retry-after': '1', 'content-type': 'application/json' },
  body: '{"error":"busy","message":"the hub is receiving other batches; retry later"}',
} as const

describe('forwarders and a busy hub (Retry-After)', () => {
  it('the wait after Retry-After is never shorter than asked, plus up to half the backoff ceiling', () => {
    // base 1000, max 60000: the share is up to 500 ms on the first retry, then 1 s, 2 s ... at most 30 s.
    const cases: [afterMs: number, attempt: number, random: number, waits: number][] = [
      [1000, 0, 0, 1000],
      [1000, 0, 1, 1500],
      [1000, 2, 1, 3000],
      [1000, 20, 1, 31_000],
      [600_000, 0, 0.5, 600_250],
    ]
    for (const [afterMs, attempt, random, waits] of cases) {
      assert.equal(
        retryAfterWait(afterMs, attempt, 1000, 60_000, () => random),
        waits,
        `${afterMs} ms, attempt ${attempt}`,
      )
    }
  })

  it('twelve forwarders told "Retry-After: 1" at once come back spread out, none before the second is up', async () => {
    const n = 12
    const hub = (await SlackReceiver.start()).script(...Array.from({ length: n }, () => BUSY))
    const diag = createDiagnostics(new MemoryLogger())
    const forwarders: Forwarder[] = Array.from({ length: n }, () =>
      createForwarder(
        // The defaults: the share on top of Retry-After is 0-500 ms on the first retry.
        forwardConfig(hub.url, {
          batchSize: 10,
          timeoutMs: 5000,
          baseDelayMs: 1000,
          maxDelayMs: 60_000,
          closeTimeoutMs: 5000,
        }),
        nodeFetch,
        diag,
      ),
    )
    try {
      for (const [i, f] of forwarders.entries()) f.push(sampleEvent({ identity: { login: `f${i}` } }))
      await hub.waitFor(2 * n, 5000)
      await waitUntil(() => diag.snapshot().counters['forward.sent'] === n, 'every event delivered')
      const from = (r: ReceivedRequest): string =>
        (JSON.parse(r.body) as { events: { identity: { login: string } }[] }).events[0]?.identity.login ?? '?'
      const waits = Array.from({ length: n }, (_, i) => {
        const mine = hub.requests.filter((r) => from(r) === `f${i}`)
        assert.equal(mine.length, 2, `forwarder ${i}: one busy answer, one retry`)
        return (mine[1] as ReceivedRequest).at - (mine[0] as ReceivedRequest).at
      })
      const shown = waits.join(', ')
      for (const w of waits) {
        // Never earlier than the hub asked (timers never fire early; 5 ms for clock rounding).
        assert.ok(w >= 995, `a forwarder came back after ${w} ms; the hub said 1 s (${shown})`)
        // 1 s plus at most half of baseDelay, plus a loaded machine's scheduling.
        assert.ok(w <= 1000 + 500 + 300, `a forwarder came back after ${w} ms (${shown})`)
      }
      // Exactly 1 s each, they would all arrive within a few ms of one another.
      const spread = Math.max(...waits) - Math.min(...waits)
      assert.ok(spread >= 150, `the retries came back in step (spread ${spread} ms): ${shown}`)
      assert.equal(diag.snapshot().counters['forward.retries'], n)
    } finally {
      await Promise.all(forwarders.map((f) => f.close(1000)))
      await hub.close()
    }
  })
})

describe('a hub that answers after the forwarder gave up', () => {
  it('the retry is the same signed batch: the hub refuses the copy as a replay and scores the events once', async () => {
    const hub = sqreenHub({
      key: HS_SECRET,
      token: 'busy-hub-spec-token-0123456789abcdefghij',
      logger: new MemoryLogger(),
      reorderWindow: 0,
    })
    const app = express()
    // The hub scores the batch at once, but its answer reaches the forwarder late: it has timed out.
    let slow = true
    app.use('/hub', (_req, res, next) => {
      if (slow) {
        slow = false
        const end = res.end.bind(res) as (...args: unknown[]) => unknown
        res.end = ((...args: unknown[]) => {
          setTimeout(() => end(...args), 600)
          return res
        }) as typeof res.end
      }
      next()
    })
    app.use('/hub', hub)
    const server = createServer(app)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(
      forwardConfig(`http://127.0.0.1:${port}/hub/v1/events`, {
        batchSize: 10,
        timeoutMs: 200,
        baseDelayMs: 50,
        maxDelayMs: 100,
        closeTimeoutMs: 5000,
      }),
      nodeFetch,
      diag,
    )
    try {
      for (let i = 0; i < 3; i++) forwarder.push(sampleEvent({ identity: { login: `late${i}` } }))
      await waitUntil(() => (diag.snapshot().counters['forward.sent'] ?? 0) === 3, 'the retry to be answered', 5000)
      const counters = diag.snapshot().counters
      assert.equal(counters['forward.retries'], 1, 'the first attempt timed out')
      assert.equal(counters['forward.failed'] ?? 0, 0)
      const stats = hub.stats()
      assert.equal(stats.counters['hub.accepted'], 3, 'scored once')
      assert.equal(stats.counters['hub.duplicates'] ?? 0, 0, 'the copy never reached the event ids')
      assert.equal(stats.problems['hub_batch_refused.replayed'], 1, 'the copy was refused by its jti')
    } finally {
      await forwarder.close()
      await hub.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})
