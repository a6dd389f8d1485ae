import type { RawAttempt } from './capture/raw.js'
import type { Diagnostics } from './diagnostics.js'
import type { AuthEvent } from './event.js'
import type { IdentityBoundary } from './identity/boundary.js'

export type EventSink = (event: AuthEvent) => unknown

export interface Pipeline {
  /** Called by capture after the response; never throws, never waits. */
  submit(raw: RawAttempt): void
  /** Resolves once every submitted attempt has been delivered to the sinks. */
  drain(): Promise<void>
}

/**
 * Carries raw attempts through the identity boundary to the sinks (the
 * `onEvent` listener today; the risk engine and the forwarder consume the same
 * events). Work in flight is bounded: past `maxPending` (for instance when a
 * slow `identifyLogin` backs up) new attempts are dropped and counted rather
 * than letting memory grow without limit.
 */
export const createPipeline = (
  boundary: IdentityBoundary,
  sinks: readonly EventSink[],
  maxPending: number,
  diag: Diagnostics,
  listenerTimeoutMs = 10_000,
): Pipeline => {
  let pending = 0
  /**
   * Identity lookups given up on (past the bound) that have not settled yet. They no longer
   * hold `drain()` or `close()`, but they still hold their request in memory, so they keep
   * counting against `maxPending` until they settle: a lookup that hangs for ever still
   * leads to events being dropped and counted, never to unbounded memory.
   */
  let abandoned = 0

  // A listener that never settles must not hold a slot (or close()) forever.
  const bounded = (work: Promise<unknown>): Promise<unknown> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        diag.count('listener_timeouts')
        diag.warn(
          'listener_timeout',
          `an event listener did not settle within ${listenerTimeoutMs} ms; it is no longer awaited.`,
        )
        resolve()
      }, listenerTimeoutMs)
      timer.unref()
      work.then(
        () => {
          clearTimeout(timer)
          resolve()
        },
        (err: unknown) => {
          clearTimeout(timer)
          diag.error('listener_rejected', 'an event listener returned a rejected promise', err)
          resolve()
        },
      )
    })
  let idle: (() => void)[] = []

  // Sinks that return promises are awaited, so `drain()` (and `close()`) covers the
  // risk engine's store writes and async listeners too, and a slow sink counts
  // against `maxPending` instead of piling up unbounded work.
  const deliver = (event: AuthEvent): Promise<unknown> | undefined => {
    diag.count('events')
    let waits: Promise<unknown>[] | undefined
    for (const sink of sinks) {
      try {
        const result = sink(event)
        if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
          waits ??= []
          waits.push(bounded(result as Promise<unknown>))
        }
      } catch (err) {
        diag.error('listener_threw', 'an event listener threw', err)
      }
    }
    return waits ? Promise.all(waits) : undefined
  }

  const settle = (): void => {
    pending--
    if (pending === 0) {
      const waiting = idle
      idle = []
      for (const resolve of waiting) resolve()
    }
  }

  return {
    submit(raw) {
      if (pending + abandoned >= maxPending) {
        diag.count('dropped')
        diag.warn(
          'pipeline_full',
          `more than ${maxPending} events are waiting (is identifyLogin slow?); new events are dropped.`,
        )
        return
      }
      pending++
      let event: ReturnType<IdentityBoundary['toEvent']>
      try {
        event = boundary.toEvent(raw)
      } catch (err) {
        diag.error('boundary_failed', 'an event could not cross the identity boundary', err)
        settle()
        return
      }
      if (!(event instanceof Promise)) {
        // The common case: no async identify, a synchronous store. No promise per event.
        const waiting = deliver(event)
        if (waiting === undefined) settle()
        else waiting.finally(settle)
        return
      }
      // An identify() / identifyLogin() that never settles must not hold its slot (or
      // close()) forever: past the same bound as a listener, its event is dropped.
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        abandoned++
        diag.count('identity_timeouts')
        diag.warn(
          'identity_timeout',
          `identify() or identifyLogin() did not settle within ${listenerTimeoutMs} ms; the event was dropped.`,
        )
        settle()
      }, listenerTimeoutMs)
      timer.unref()
      event
        .then(
          (resolved) => {
            if (timedOut) return undefined
            clearTimeout(timer)
            return deliver(resolved)
          },
          (err: unknown) => {
            if (timedOut) return
            clearTimeout(timer)
            diag.error('boundary_failed', 'an event could not cross the identity boundary', err)
          },
        )
        .finally(() => {
          if (timedOut) abandoned--
          else settle()
        })
    },
    drain() {
      return pending === 0 ? Promise.resolve() : new Promise((resolve) => idle.push(resolve))
    },
  }
}
