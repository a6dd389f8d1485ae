/**
 * The forwarder's bookkeeping across retries, against a scripted hub (a fetch that answers
 * what each case needs, in order): the `dropped` count a re-sent batch settles, the batch
 * size after a 413 chase that ends on one oversized event, and which 401s are the clock's.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { AuthEvent, FetchLike } from '../lib/index.js'
import { nodeFetch } from '../lib/notify/http.js'
import { createForwarder, type ForwardConfig } from '../lib/transport/forwarder.js'
import { signingKey } from '../lib/transport/keys.js'
import { MemoryLogger } from './helpers/apps.js'
import { forwardConfig, sampleEvent, startHub } from './helpers/hub.js'
import { waitUntil } from './helpers/receivers.js'

interface Sent {
  readonly jti: string
  readonly dropped: number
  readonly events: AuthEvent[]
}

/** A hub that answers `answer(batch)`; the batches it was sent, in order. */
const scriptedHub = (answer: (batch: Sent, n: number) => { status: number; body?: string }) => {
  const sent: Sent[] = []
  const fetch = (async (_url: string, init?: { body?: string | Uint8Array }) => {
    const batch = JSON.parse(Buffer.from(init?.body ?? '').toString('utf8')) as Sent
    sent.push(batch)
    const { status, body = '{}' } = answer(batch, sent.length)
    return { status, headers: { get: () => null }, text: async () => body }
  }) as unknown as FetchLike
  return { sent, fetch }
}

const config = (overrides: Partial<ForwardConfig> = {}): ForwardConfig =>
  forwardConfig('http://hub.invalid/hub/v1/events', {
    maxQueued: 5,
    timeoutMs: 5000,
    baseDelayMs: 20,
    maxDelayMs: 40,
    closeTimeoutMs: 3000,
    ...overrides,
  })

describe('forwarder retries: what each answer settles', () => {
  // The forwarder's timers are unref'ed (it never keeps a process alive): this test's must.
  let keep: NodeJS.Timeout
  before(() => {
    keep = setInterval(() => {}, 1000)
  })
  after(() => clearInterval(keep))

  it('a re-sent batch settles the drops it reported, not those made since: the next batch reports them', async () => {
    let release: (() => void) | undefined
    const hub = scriptedHub((_batch, n) => (n === 1 ? { status: 503 } : n === 2 ? { status: 409 } : { status: 200 }))
    const slowFirst = (async (url: string, init?: unknown) => {
      if (hub.sent.length === 0) await new Promise<void>((resolve) => (release = resolve))
      return (hub.fetch as (u: string, i?: unknown) => Promise<unknown>)(url, init)
    }) as unknown as FetchLike
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(config(), async () => slowFirst, diag)
    try {
      // 8 into a queue of 5: 3 dropped before the first batch is signed.
      for (let i = 0; i < 8; i++) forwarder.push(sampleEvent({ identity: { login: `a${i}` } }))
      await waitUntil(() => release !== undefined, 'the first batch in flight')
      // Everything queued is in flight: these 4 are dropped while it is.
      for (let i = 0; i < 4; i++) forwarder.push(sampleEvent({ identity: { login: `b${i}` } }))
      release?.()
      // 503, then the same batch again (409: the hub had it), then a new one.
      await waitUntil(() => hub.sent.length >= 2, 'the copy')
      forwarder.push(sampleEvent({ identity: { login: 'c' } }))
      await forwarder.flush()
      assert.equal(hub.sent[1]?.jti, hub.sent[0]?.jti, 'the copy')
      assert.equal(hub.sent[0]?.dropped, 3)
      assert.equal(hub.sent.at(-1)?.dropped, 4, 'the drops made while the first batch was out')
      assert.equal(diag.snapshot().counters['forward.dropped'], 7)
    } finally {
      await forwarder.close()
    }
  })

  it('a 413 chase that ends on one event too large for the hub restores the batch size', async () => {
    // A body limit, as a hub or a proxy has one: 413 for a body over 40 kB, which only the
    // batches holding the 50 kB event exceed.
    const hub = scriptedHub((batch) => (JSON.stringify(batch).length > 40_000 ? { status: 413 } : { status: 200 }))
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(
      config({ batchSize: 64, maxQueued: 10_000, flushIntervalMs: 5 }),
      async () => hub.fetch,
      diag,
    )
    try {
      forwarder.push(sampleEvent({ identity: { login: 'huge' }, userAgent: 'x'.repeat(50_000) }))
      for (let i = 0; i < 63; i++) forwarder.push(sampleEvent({ identity: { login: `n${i}` } }))
      await forwarder.flush()
      assert.equal(diag.snapshot().counters['forward.failed'], 1, 'the oversized event, alone')
      const before = hub.sent.length
      for (let i = 0; i < 128; i++) forwarder.push(sampleEvent({ identity: { login: `m${i}` } }))
      await forwarder.flush()
      assert.deepEqual(
        hub.sent.slice(before).map((b) => b.events.length),
        [64, 64],
        'full batches again',
      )
    } finally {
      await forwarder.close()
    }
  })

  it("a 401 about the batch's times is retried, signed again; a 401 bad_claim about anything else is not", async () => {
    const expired = JSON.stringify({ error: 'expired', message: 'the batch has expired (exp); check the sender clock' })
    const typ = JSON.stringify({ error: 'bad_claim', message: 'the batch claim "typ" is missing or invalid' })
    const clockHub = scriptedHub((_b, n) => (n === 1 ? { status: 401, body: expired } : { status: 200 }))
    const diag = createDiagnostics(new MemoryLogger())
    const clock = createForwarder(config(), async () => clockHub.fetch, diag)
    try {
      clock.push(sampleEvent())
      await clock.flush()
      assert.equal(clockHub.sent.length, 2)
      assert.notEqual(clockHub.sent[1]?.jti, clockHub.sent[0]?.jti, 'signed again, with the time then')
      assert.equal(diag.snapshot().counters['forward.failed'] ?? 0, 0)
    } finally {
      await clock.close()
    }
    const typHub = scriptedHub(() => ({ status: 401, body: typ }))
    const diag2 = createDiagnostics(new MemoryLogger())
    const mismatch = createForwarder(config(), async () => typHub.fetch, diag2)
    try {
      mismatch.push(sampleEvent())
      await mismatch.flush()
      assert.equal(typHub.sent.length, 1, 'not retried')
      assert.equal(diag2.snapshot().counters['forward.failed'], 1)
    } finally {
      await mismatch.close()
    }
  })
})

describe('forwarder behind a proxy with a body limit (nginx client_max_body_size)', () => {
  it('events too large for the limit, one after another, cost about one request each, not a chase each', async () => {
    const hub = await startHub()
    const LIMIT = 6_000
    let requests = 0
    let uploaded = 0
    // What nginx does with client_max_body_size: an HTML 413 above the limit, else the hub's answer.
    const proxy = createServer(async (req, res) => {
      requests++
      const chunks: Buffer[] = []
      for await (const chunk of req) chunks.push(chunk as Buffer)
      const body = Buffer.concat(chunks)
      uploaded += body.length
      if (body.length > LIMIT) {
        res
          .writeHead(413, { 'content-type': 'text/html' })
          .end('<html><body>413 Request Entity Too Large</body></html>')
        return
      }
      const answer = await fetch(hub.ingestUrl, {
        method: 'POST',
        headers: req.headers as Record<string, string>,
        body,
      })
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text())
    })
    proxy.listen(0, '127.0.0.1')
    await once(proxy, 'listening')
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/hub/v1/events`
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(
      forwardConfig(url, { batchSize: 64, maxQueued: 10_000, flushIntervalMs: 5 }),
      nodeFetch,
      diag,
    )
    try {
      // 10 events of about 8 kB (a long user agent), each followed by 5 ordinary ones.
      for (let i = 0; i < 10; i++) {
        forwarder.push(sampleEvent({ userAgent: `big-${i}-${'x'.repeat(8_000)}` }))
        for (let j = 0; j < 5; j++) forwarder.push(sampleEvent({ identity: { login: `n${i}-${j}` } }))
      }
      await forwarder.flush()
      const { counters } = diag.snapshot()
      assert.equal(counters['forward.failed'], 10, 'each oversized event dropped, alone')
      assert.equal(hub.counter('hub.accepted'), 50, 'every ordinary event delivered')
      // One chase to find the limit (64 -> 1: 7 requests), then batches packed below it and
      // oversized events dropped without a request. Before: a chase per oversized event.
      assert.ok(requests <= 20, `${requests} requests`)
      assert.ok(uploaded < 300_000, `${uploaded} bytes uploaded`)
    } finally {
      await forwarder.close()
      proxy.closeAllConnections()
      proxy.close()
      await hub.close()
    }
  })
})

describe('forwarder: a 413 about the count of events', () => {
  it("the hub's too_many_events halves batches without capping their bytes: a large event it takes still goes", async () => {
    const hub = await startHub({ limits: { events: 8 } })
    const diag = createDiagnostics(new MemoryLogger())
    const forwarder = createForwarder(
      forwardConfig(hub.ingestUrl, { batchSize: 64, maxQueued: 10_000, flushIntervalMs: 5 }),
      nodeFetch,
      diag,
    )
    // About 13 kB of JSON, within the hub's schema: larger than the batches refused for their count.
    const big = sampleEvent({
      type: 'custom',
      source: 'sdk',
      strategy: null,
      reason: undefined,
      loginKey: undefined,
      attempts: undefined,
      status: undefined,
      name: 'export',
      severity: 'low',
      identity: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(250)])),
      properties: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`p${i}`, 'x'.repeat(250)])),
    })
    try {
      for (let i = 0; i < 40; i++) forwarder.push(sampleEvent())
      forwarder.push(big)
      for (let i = 0; i < 10; i++) forwarder.push(sampleEvent())
      await forwarder.flush()
      assert.equal(diag.snapshot().counters['forward.failed'] ?? 0, 0)
      assert.equal(hub.counter('hub.accepted'), 51)
    } finally {
      await forwarder.close()
      await hub.close()
    }
  })
})

describe('forwarder: who answered, and why it failed', () => {
  const serveWith = async (handler: Parameters<typeof createServer>[1]) => {
    const server = createServer(handler)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hub/v1/events`,
      close: () => {
        server.closeAllConnections()
        server.close()
      },
    }
  }

  it("a proxy's own 401 (HTML, not the hub's JSON) is not blamed on forward.key", async () => {
    const proxy = await serveWith((req, res) => {
      req.resume()
      res.writeHead(401, { 'content-type': 'text/html', 'www-authenticate': 'Basic realm="ops"' })
      res.end('<html><body>401 Authorization Required</body></html>')
    })
    const logger = new MemoryLogger()
    const diag = createDiagnostics(logger)
    const forwarder = createForwarder(forwardConfig(proxy.url), nodeFetch, diag)
    try {
      forwarder.push(sampleEvent())
      await forwarder.flush()
      const line = logger.lines.find((l) => l.includes('forward_refused')) ?? ''
      assert.match(line, /HTTP 401 \(text\/html\) from something at forward\.url that is not the hub/)
      assert.doesNotMatch(line, /forward\.key/)
    } finally {
      await forwarder.close()
      proxy.close()
    }
    // The hub's own 401 still names the key.
    const hub = await startHub()
    const logger2 = new MemoryLogger()
    const wrongKey = createForwarder(
      forwardConfig(hub.ingestUrl, { key: signingKey('another-secret-0123456789abcdefghijklmnop') }),
      nodeFetch,
      createDiagnostics(logger2),
    )
    try {
      wrongKey.push(sampleEvent())
      await wrongKey.flush()
      assert.match(
        logger2.lines.find((l) => l.includes('forward_refused')) ?? '',
        /HTTP 401 bad_signature.*forward\.key/,
      )
    } finally {
      await wrongKey.close()
      await hub.close()
    }
  })

  it('a connection reset under a request is retried at once, not after a backoff; a refused connection names its code', async () => {
    const hub = await startHub()
    let seen = 0
    // The first request's connection is dropped before any answer (a proxy closing a kept-alive
    // connection as it is reused); the next ones are passed to the hub.
    const proxy = await serveWith(async (req, res) => {
      if (++seen === 1) {
        req.socket.destroy()
        return
      }
      const chunks: Buffer[] = []
      for await (const chunk of req) chunks.push(chunk as Buffer)
      const answer = await fetch(hub.ingestUrl, {
        method: 'POST',
        headers: req.headers as Record<string, string>,
        body: Buffer.concat(chunks),
      })
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text())
    })
    const diag = createDiagnostics(new MemoryLogger())
    // A backoff of 10 s: only an immediate retry delivers within the test.
    const forwarder = createForwarder(
      forwardConfig(proxy.url, { baseDelayMs: 10_000, maxDelayMs: 10_000 }),
      nodeFetch,
      diag,
    )
    try {
      forwarder.push(sampleEvent())
      await forwarder.flush()
      const { counters } = diag.snapshot()
      assert.equal(counters['forward.resets'], 1)
      assert.equal(counters['forward.retries'] ?? 0, 0)
      assert.equal(hub.counter('hub.accepted'), 1)
    } finally {
      await forwarder.close()
      proxy.close()
      await hub.close()
    }
    // Nothing listening: the log says ECONNREFUSED, not only "FetchError".
    const closed = await serveWith(() => {})
    closed.close()
    const logger = new MemoryLogger()
    const nobody = createForwarder(forwardConfig(closed.url), nodeFetch, createDiagnostics(logger))
    try {
      nobody.push(sampleEvent())
      await waitUntil(() => logger.lines.some((l) => l.includes('forward_unreachable')), 'the outage to be logged')
      assert.match(logger.lines.find((l) => l.includes('forward_unreachable')) ?? '', /ECONNREFUSED/)
    } finally {
      await nobody.close(100)
    }
  })
})
