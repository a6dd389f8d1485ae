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
  it('drops the event of an identity lookup that never settles, frees its slot, and drain() resolves', async () => {
    const { logger, lines } = quiet()
    const diag = createDiagnostics(logger)
    const delivered: string[] = []
    const sink: EventSink = (e) => void delivered.push(e.id)
    // One slot: the stuck lookup would otherwise refuse every later event.
    const pipeline = createPipeline(boundary(NEVER, event('after')), [sink], 1, diag, BOUND_MS)
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.equal(diag.snapshot().counters.identity_timeouts, 1)
    assert.equal(diag.snapshot().problems.identity_timeout, 1)
    assert.ok(lines.some((l) => l.includes('did not settle')))
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.deepEqual(delivered, ['after'])
    assert.equal(diag.snapshot().counters.dropped, undefined)
  })

  it('does not deliver a lookup that settles after its bound, and frees the slot once', async () => {
    const diag = createDiagnostics(quiet().logger)
    const delivered: string[] = []
    const late = new Promise<AuthEvent>((resolve) => setTimeout(() => resolve(event('late')), BOUND_MS * 3))
    const pipeline = createPipeline(
      boundary(late, event('next'), event('third')),
      [(e) => void delivered.push(e.id)],
      2,
      diag,
      BOUND_MS,
    )
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    await late
    await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(delivered, [])
    // Had the late answer freed its slot a second time, the count would go below zero and
    // drain() would no longer wait for work in flight.
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const slow = createPipeline(boundary(event('held')), [() => held], 2, diag, BOUND_MS * 50)
    slow.submit(raw)
    let drained = false
    void slow.drain().then(() => {
      drained = true
    })
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(drained, false, 'drain() waits for a listener in flight')
    release()
    await drainedWithin(slow.drain(), BOUND_MS * 20)
    pipeline.submit(raw)
    pipeline.submit(raw)
    await drainedWithin(pipeline.drain(), BOUND_MS * 20)
    assert.deepEqual(delivered, ['next', 'third'])
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
