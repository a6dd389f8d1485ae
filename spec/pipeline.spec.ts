import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RawAttempt } from '../lib/capture/raw.js'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { AuthEvent } from '../lib/event.js'
import type { IdentityBoundary } from '../lib/identity/boundary.js'
import { createPipeline, type EventSink } from '../lib/pipeline.js'

/**
 * The pipeline's bounds, at unit level with a short bound (the middleware uses 10 s):
 * nothing an application callback does may hold a slot, `drain()` or `close()` forever.
 * The identity boundary is a stand-in here: what is under test is the pipeline's own timer.
 */

const BOUND_MS = 100
const NEVER = new Promise<never>(() => {})
const raw = {} as RawAttempt
const event = (id: string): AuthEvent => ({ id }) as unknown as AuthEvent

/** A boundary answering each call with the next of `answers`. */
const boundary = (...answers: (AuthEvent | Promise<AuthEvent>)[]): IdentityBoundary => ({
  toEvent: () => answers.shift() ?? event('default'),
  userKeyOfUser: () => null,
  loginKeyOf: (login) => `login:${login}`,
  linksOf: () => ({ current: undefined, typedAsCurrent: false, others: [] }),
})

const quiet = () => {
  const lines: string[] = []
  return { logger: { warn: (l: string) => lines.push(l), error: (l: string) => lines.push(l) }, lines }
}

/** `drain()` must settle within `ms`, or the test fails (instead of hanging). */
const drainedWithin = async (drain: Promise<void>, ms: number): Promise<void> => {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), ms)
  })
  const outcome = await Promise.race([drain.then(() => 'drained' as const), late])
  clearTimeout(timer)
  assert.equal(outcome, 'drained', `drain() did not settle within ${ms} ms`)
}

describe('pipeline bounds', () => {
  it('drops the event of an identity lookup that never settles: drain() resolves, its capacity stays taken', async () => {
    const { logger, lines } = quiet()
    const diag = createDiagnostics(logger)
    const delivered: string[] = []
    const sink: EventSink = (e) => void delivered.push(e.id)
    const pipeline = createPipeline(boundary(NEVER, event('after'), event('refused')), [sink], 2, diag, BOUND_MS)
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.equal(diag.snapshot().counters.identity_timeouts, 1)
    assert.equal(diag.snapshot().problems.identity_timeout, 1)
    assert.ok(lines.some((l) => l.includes('did not settle')))
    // The hung lookup still holds its request: it counts against maxPending (2) until it settles.
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.deepEqual(delivered, ['after'])
    assert.equal(diag.snapshot().counters.dropped, undefined)
    const blocker = createPipeline(boundary(NEVER, event('refused')), [sink], 1, diag, BOUND_MS)
    blocker.submit(raw)
    await drainedWithin(blocker.drain(), BOUND_MS * 20)
    blocker.submit(raw)
    assert.equal(diag.snapshot().counters.dropped, 1)
    assert.deepEqual(delivered, ['after'])
  })

  it('does not deliver a lookup that settles after its bound; its capacity comes back when it settles', async () => {
    const diag = createDiagnostics(quiet().logger)
    const delivered: string[] = []
    const late = new Promise<AuthEvent>((resolve) => setTimeout(() => resolve(event('late')), BOUND_MS * 3))
    const pipeline = createPipeline(
      boundary(late, event('next')),
      [(e) => void delivered.push(e.id)],
      1,
      diag,
      BOUND_MS,
    )
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    await late
    await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(delivered, [])
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.deepEqual(delivered, ['next'])
    assert.equal(diag.snapshot().counters.dropped, undefined)
  })

  it('a rejected lookup is logged as a boundary failure before its bound, not as a timeout', async () => {
    const diag = createDiagnostics(quiet().logger)
    const pipeline = createPipeline(boundary(Promise.reject(new TypeError('boom'))), [], 1, diag, BOUND_MS)
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS / 2)
    await new Promise((resolve) => setTimeout(resolve, BOUND_MS * 2))
    assert.equal(diag.snapshot().problems.boundary_failed, 1)
    assert.equal(diag.snapshot().counters.identity_timeouts, undefined)
  })

  it('stops awaiting a listener that never settles (listener_timeouts), so drain() resolves', async () => {
    const diag = createDiagnostics(quiet().logger)
    const pipeline = createPipeline(boundary(event('a')), [() => NEVER], 1, diag, BOUND_MS)
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.equal(diag.snapshot().counters.listener_timeouts, 1)
    assert.equal(diag.snapshot().problems.listener_timeout, 1)
  })
})
