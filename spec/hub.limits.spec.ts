/**
 * What a hub holds for whoever reaches `POST /v1/events`, over real HTTP (node:http
 * clients that stop mid-body, trickle or hang up): a missing or malformed
 * `Sqreen-Signature` is refused before a byte of the body is read; bodies being
 * received share one byte budget (`limits.inflight`: 503 + Retry-After past it, by
 * Content-Length or chunk by chunk); a body slower than `bodyTimeout` gets 408 and
 * its connection closed; an upload that ends, times out or is aborted gives its share
 * back. Also: a cross-site sign-out is refused without touching the cookie, and a
 * JWT with a batch's `typ` is never a credential.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type ClientRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders, request } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { describe, it } from 'node:test'
import express from 'express'
import { SignJWT } from 'jose'
import supertest from 'supertest'
import { sqreenHub } from '../lib/index.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, BATCH_TYP } from '../lib/transport/wire.js'
import { MemoryLogger } from './helpers/apps.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)

/** Well-formed, never valid: what an unauthenticated sender can always put in the header. */
const SHAPED = `${Buffer.from(JSON.stringify({ alg: 'HS256', typ: BATCH_TYP, b64: false, crit: ['b64'] })).toString('base64url')}..${'A'.repeat(43)}`

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: any
}

/** A POST the test writes by hand: headers at once, then the body bit by bit (or never all of it). */
interface Upload {
  readonly req: ClientRequest
  /** The hub's answer, or the client error if the connection went first. */
  readonly answer: Promise<Answer>
  /** The client's socket has closed. */
  readonly closed: Promise<void>
}

const upload = (
  url: string,
  options: { readonly length?: number; readonly signature?: string | null; readonly first?: string } = {},
): Upload => {
  const target = new URL(url)
  const headers: OutgoingHttpHeaders = { 'content-type': BATCH_CONTENT_TYPE }
  if (options.signature !== null) headers[BATCH_SIGNATURE_HEADER] = options.signature ?? SHAPED
  // No Content-Length: node:http sends the body chunked.
  if (options.length !== undefined) headers['content-length'] = options.length
  const req = request({
    host: target.hostname,
    port: target.port,
    path: target.pathname,
    method: 'POST',
    headers,
    agent: false,
  })
  // The hub may close while bytes are still being written (EPIPE, ECONNRESET): the answer says what happened.
  const failed = new Promise<never>((_, reject) => req.on('error', reject))
  failed.catch(() => {})
  const answer = Promise.race([
    failed,
    new Promise<Answer>((resolve) => {
      req.once('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body })
        })
      })
    }),
  ])
  answer.catch(() => {})
  const closed = new Promise<void>((resolve) => {
    req.once('socket', (socket: Socket) => socket.once('close', () => resolve()))
  })
  req.flushHeaders()
  if (options.first !== undefined) req.write(options.first)
  return { req, answer, closed }
}

/** Rejects after `ms`: an answer the hub never gives fails the test instead of hanging it. */
const within = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Polls an async condition every 20 ms (the hub registers an upload when its headers arrive). */
const eventually = async (condition: () => Promise<boolean>, what: string, ms = 3000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const validBatch = async (hub: RunningHub): Promise<{ status: number; body: any; headers: Headers }> =>
  postBatch(hub.ingestUrl, await signBatch([sampleEvent({ userKey: 'login:limits' })], { key }))

/** Lets bytes written on other connections reach the hub before the next request competes for the budget. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 200))

/** Until the hub's budget is taken (by uploads opened before): a batch of `bytes` is then refused with 503. */
const untilFull = (hub: RunningHub, bytes: number): Promise<void> =>
  eventually(async () => {
    const probe = upload(hub.ingestUrl, { length: bytes })
    probe.req.end('x'.repeat(bytes))
    return (await within(probe.answer, 3000, 'probe answer')).status === 503
  }, 'the open uploads to take the budget')

describe('hub ingest: what an upload may hold', () => {
  it('refuses a missing or malformed Sqreen-Signature before reading the body (400, as the verifier answers)', async () => {
    const hub = await startHub()
    try {
      const cases: [string, string | null][] = [
        ['no header', null],
        ['not a JWS', 'hello'],
        ['attached (payload in the middle)', 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln'],
        ['characters outside base64url', 'ey+J/..sig='],
        ['oversized', `${'e'.repeat(5000)}..${'A'.repeat(43)}`],
      ]
      for (const [what, signature] of cases) {
        // 4 KiB announced, 10 bytes sent, the rest never: only an answer before the read can come.
        const slow = upload(hub.ingestUrl, { length: 4096, signature, first: '{"v":2,"ev' })
        const res = await within(slow.answer, 2000, `answer (${what})`)
        assert.equal(res.status, 400, what)
        assert.equal(res.body.error, 'malformed', what)
        assert.match(res.body.message, /detached JWS/, what)
        assert.equal(res.headers.connection, 'close', what)
        await within(slow.closed, 2000, `closed connection (${what})`)
      }
      assert.equal(hub.counter('hub.batches_refused'), cases.length)
      assert.ok(hub.logger.lines.some((l) => l.includes('hub_batch_refused.malformed')))
      // A well-formed header is read and verified as before.
      assert.equal((await validBatch(hub)).status, 200)
    } finally {
      await hub.close()
    }
  })

  it('past limits.inflight: 503 + Retry-After + Connection: close, counted; free again once the uploads end', async () => {
    const hub = await startHub({ limits: { body: 4096, inflight: 8192 } })
    try {
      // Two uploads that announce 4000 bytes each and send 3990: 7980 of 8192 held.
      const held = [0, 1].map(() => upload(hub.ingestUrl, { length: 4000, first: 'x'.repeat(3990) }))
      // Their bytes arrive first (the budget is first come, first served: a probe could take it before them).
      await settle()
      await untilFull(hub, 4000)
      const refused = upload(hub.ingestUrl, { length: 4000, first: 'x'.repeat(300) })
      const res = await within(refused.answer, 2000, 'answer over budget')
      assert.equal(res.status, 503)
      assert.equal(res.body.error, 'busy')
      assert.equal(res.headers['retry-after'], '1')
      assert.equal(res.headers.connection, 'close')
      await within(refused.closed, 2000, 'closed connection over budget')
      // A valid batch waits its turn as well (503: the forwarder keeps it and retries).
      assert.equal((await validBatch(hub)).status, 503)
      assert.ok(hub.counter('hub.busy') >= 3)
      assert.equal(hub.logger.lines.filter((l) => l.includes('hub_uploads_over_budget')).length, 1, 'logged once')

      // The held uploads end (and are refused: their signature is only well-formed): their bytes are free.
      for (const h of held) h.req.end('x'.repeat(10))
      for (const h of held) assert.equal((await within(h.answer, 2000, 'held answer')).status, 401)
      assert.equal((await validBatch(hub)).status, 200)

      // Chunked (no Content-Length): the share grows with the bytes and is refused where they pass the budget.
      const more = [0, 1].map(() => upload(hub.ingestUrl, { length: 3000, first: 'x'.repeat(2990) }))
      await settle()
      await untilFull(hub, 3000) // 5980 of 8192 held
      const chunked = upload(hub.ingestUrl)
      chunked.req.write('y'.repeat(1500)) // 7500: fits
      await new Promise((r) => setTimeout(r, 50))
      chunked.req.write('y'.repeat(1500)) // 9000: over the budget, though under limits.body
      const grown = await within(chunked.answer, 2000, 'chunked answer over budget')
      assert.equal(grown.status, 503)
      assert.equal(grown.headers['retry-after'], '1')
      for (const m of more) m.req.destroy()
    } finally {
      await hub.close()
    }
  })

  it('an upload slower than bodyTimeout gets 408 and its connection closed; its share is freed', async () => {
    // One full-size upload takes the whole budget: while it trickles nothing else gets in.
    const hub = await startHub({ bodyTimeout: 1000, limits: { body: 4096, inflight: 4096 } })
    try {
      for (const length of [4096, undefined]) {
        const started = Date.now()
        const slow = upload(hub.ingestUrl, { first: 'x'.repeat(4000), ...(length === undefined ? {} : { length }) })
        const trickle = setInterval(() => slow.req.write('x'), 50)
        try {
          await settle()
          assert.equal((await validBatch(hub)).status, 503, 'held while it trickles')
          const res = await within(slow.answer, 3000, 'answer to a slow upload')
          assert.equal(res.status, 408, `${length}`)
          assert.equal(res.body.error, 'timeout')
          assert.equal(res.headers.connection, 'close')
          assert.ok(Date.now() - started >= 950, `answered after ${Date.now() - started} ms`)
          await within(slow.closed, 2000, 'closed connection after 408')
        } finally {
          clearInterval(trickle)
        }
        assert.equal((await validBatch(hub)).status, 200, 'its share is free again')
      }
      assert.equal(hub.counter('hub.batches_refused'), 2)
      assert.ok(hub.logger.lines.some((l) => l.includes('hub_batch_refused.timeout')))
    } finally {
      await hub.close()
    }
  })

  it('a request its client gave up on before the hub read it is dropped at once, not logged as a slow upload', async () => {
    // A slow middleware before the hub (a rate limiter waiting on Redis) outlasts the proxy's
    // read timeout: the proxy closes the connection, and the request reaches the hub destroyed.
    const logger = new MemoryLogger()
    const hub = sqreenHub({ key: HS_SECRET, token: HUB_TOKEN, logger, bodyTimeout: 1000, reorderWindow: 0 })
    const app = express()
    app.use('/hub', (_req, _res, next) => void setTimeout(next, 300))
    app.use('/hub', hub)
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const body = JSON.stringify({ v: 2, events: [] })
      const req = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hub/v1/events`, {
        method: 'POST',
        headers: {
          'content-type': BATCH_CONTENT_TYPE,
          [BATCH_SIGNATURE_HEADER]: 'eyJhbGciOiJIUzI1NiJ9..c2ln',
          'content-length': Buffer.byteLength(body),
        },
      })
      req.on('error', () => {})
      req.end(body)
      await new Promise((r) => setTimeout(r, 100))
      req.destroy()
      // Past the hub's bodyTimeout: the build before waited it out, then logged a timeout.
      await new Promise((r) => setTimeout(r, 1500))
      assert.equal(hub.stats().counters['hub.batches_refused'] ?? 0, 0)
      assert.ok(!logger.lines.some((l) => l.includes('timeout')), logger.lines.join('\n'))
    } finally {
      server.closeAllConnections()
      server.close()
      await hub.close()
    }
  })

  it('a declared Content-Length holds nothing: uploads that send no body byte never lock senders out', async () => {
    const hub = await startHub({ limits: { body: 4096, inflight: 4 * 4096 } })
    const idle = Array.from({ length: 8 }, () => upload(hub.ingestUrl, { length: 4096 }))
    try {
      // Eight connections announce twice the budget and send nothing: a real batch still gets in.
      await new Promise((r) => setTimeout(r, 100))
      assert.equal((await validBatch(hub)).status, 200)
      assert.equal(hub.counter('hub.busy'), 0)
    } finally {
      for (const u of idle) u.req.destroy()
      await hub.close()
    }
  })

  it('aborted uploads give their share back: 10 uploads destroyed mid-body, then a valid batch is accepted', async () => {
    // Long enough that only the abort, not the deadline, can free the bytes within the test.
    const hub = await startHub({ bodyTimeout: '1m', limits: { body: 4096, inflight: 10 * 4096 } })
    try {
      const uploads = Array.from({ length: 10 }, () => upload(hub.ingestUrl, { length: 4096, first: 'x'.repeat(4090) }))
      // All 10 held (the whole budget): a valid batch is turned away.
      await settle()
      await eventually(async () => (await validBatch(hub)).status === 503, 'the 10 uploads to hold the budget')
      for (const u of uploads) u.req.destroy()
      await eventually(async () => (await validBatch(hub)).status === 200, 'a valid batch accepted', 2000)
      assert.ok(!hub.logger.lines.some((l) => l.includes('hub_handler_failed')), 'an abort is not a failure')
    } finally {
      await hub.close()
    }
  })
})

describe('hub sign-out and credentials', () => {
  it('a cross-site POST /logout is refused (403) without a Set-Cookie, and the session lives on; same-origin signs out', async () => {
    const hub = await startHub()
    try {
      const signIn = await supertest(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
      const session = ((signIn.headers['set-cookie'] as unknown as string[])[0] ?? '').split(';')[0] as string
      const crossSite = await supertest(hub.app)
        .post('/hub/logout')
        .set('Cookie', session)
        .set('Sec-Fetch-Site', 'cross-site')
        .expect(403)
      assert.equal(crossSite.headers['set-cookie'], undefined, 'the cookie is left alone')
      await supertest(hub.app).get('/hub/').set('Cookie', session).expect(200)

      for (const site of ['same-origin', 'none']) {
        const again = await supertest(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
        const cookie = ((again.headers['set-cookie'] as unknown as string[])[0] ?? '').split(';')[0] as string
        const out = await supertest(hub.app)
          .post('/hub/logout')
          .set('Cookie', cookie)
          .set('Sec-Fetch-Site', site)
          .expect(303)
        assert.match((out.headers['set-cookie'] as unknown as string[])[0] ?? '', /sqreen_hub=;/, site)
        await supertest(hub.app).get('/hub/').set('Cookie', cookie).expect(303)
      }
    } finally {
      await hub.close()
    }
  })

  it("a JWT with a batch's typ (v2, v1's +jwt, any case, application/) is not a credential; other typs are", async () => {
    const jwtKey = new TextEncoder().encode('hub-spec-jwt-secret-0123456789abcdef-another')
    const hub = await startHub({ jwt: { key: Buffer.from(jwtKey) } })
    try {
      const now = Math.floor(Date.now() / 1000)
      const jwt = (typ?: string) =>
        new SignJWT({ sub: 'alice', exp: now + 60 })
          .setProtectedHeader(typ === undefined ? { alg: 'HS256' } : { alg: 'HS256', typ })
          .sign(jwtKey)
      for (const typ of [BATCH_TYP, `${BATCH_TYP}+jwt`, 'Sqreen-Auth-Batch', `application/${BATCH_TYP}`]) {
        const token = await jwt(typ)
        await supertest(hub.app).get('/hub/v1/stats').set('Authorization', `Bearer ${token}`).expect(401)
        await supertest(hub.app).post('/hub/login').type('form').send({ token }).expect(401)
      }
      for (const typ of ['JWT', 'at+jwt', undefined]) {
        await supertest(hub.app)
          .get('/hub/v1/stats')
          .set('Authorization', `Bearer ${await jwt(typ)}`)
          .expect(200)
      }
    } finally {
      await hub.close()
    }
  })
})
