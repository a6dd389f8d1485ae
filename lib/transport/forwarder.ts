import { randomUUID } from 'node:crypto'
import { FlattenedSign } from 'jose'
import type { Diagnostics } from '../diagnostics.js'
import type { AuthEvent } from '../event.js'
import { preparedJoseKey } from '../jose-key.js'
import { type FetchLike, retryAfterMs } from '../notify/http.js'
import { backoff } from '../notify/queue.js'
import { EventQueue } from './event-queue.js'
import type { ForwardKeyInput, SigningKey } from './keys.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, BATCH_TYP, WIRE_VERSION } from './wire.js'

/** `sqreenAuth({ forward })`: where and how events are shipped to a Security Hub. */
export interface ForwardOptions {
  /** The hub's ingest endpoint: its mount path + `/v1/events`, e.g. `https://hub.internal/sqreen/v1/events`. Required. */
  url: string
  /**
   * Signs each batch (JWS). A shared HS256 secret (string or Buffer, at least 32 bytes), or an
   * Ed25519 private key (`KeyObject` or PKCS#8 PEM) whose public key the hub holds (`EdDSA`). Required.
   */
  key: ForwardKeyInput
  /** Events per batch (the hub accepts 1000 by default). Defaults to `500`. */
  batchSize?: number
  /** Longest wait before a partial batch is sent, ms or a duration (`'2s'`). Defaults to `1000`. */
  flushInterval?: number | string
  /** Events kept while the hub is unreachable; past it the oldest are dropped (counted in `forward.dropped`). Defaults to `10000`. */
  maxQueued?: number
  /** Per-request timeout, ms. Defaults to `10000`. */
  timeout?: number
  /**
   * Backoff while the hub is unreachable (exponential with jitter, ms). A `Retry-After` wins,
   * plus a random share of up to half this backoff so that forwarders do not retry in step.
   * Defaults to `1000` and `60000`.
   */
  baseDelay?: number
  maxDelay?: number
  /** Lifetime of each signed batch (`exp - iat`), ms or a duration, 1 s to 1 h; the hub refuses more than its `maxTokenAge` (5 min). Defaults to `60000`. */
  expiresIn?: number | string
  /** How long `close()` keeps trying to deliver what is queued, ms. Defaults to `5000`. */
  closeTimeout?: number
  /**
   * Flush on SIGTERM / SIGINT. When the application has no handler for the signal, the
   * process is then ended by the same signal (as if we were not there); when it has one,
   * its handlers run as usual. Defaults to `false`.
   */
  flushOnExit?: boolean
}

/** The resolved `forward` option (see `Options['forward']` for the documentation of each field). */
export interface ForwardConfig {
  readonly url: string
  readonly key: SigningKey
  readonly batchSize: number
  readonly flushIntervalMs: number
  readonly maxQueued: number
  readonly timeoutMs: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly expiresInSeconds: number
  readonly closeTimeoutMs: number
  readonly flushOnExit: boolean
}

export interface Forwarder {
  /** Queues one event; O(1), never throws, never waits. */
  push(event: AuthEvent): void
  /** Sends everything queued now (in batches); resolves when the queue is empty. */
  flush(): Promise<void>
  /** Flushes for at most `timeoutMs`, then abandons what is left (counted). Idempotent. */
  close(timeoutMs?: number): Promise<void>
  /** Events queued or in flight. */
  readonly size: number
}

type Outcome =
  | { readonly kind: 'sent'; readonly rejected: number; readonly reason?: string }
  | { readonly kind: 'retry'; readonly afterMs?: number; readonly reason: string; readonly resign?: true }
  | {
      readonly kind: 'split'
      readonly reason: string
      /** The body's size was refused (not the hub's `too_many_events`, a count): batches must stay below it. */
      readonly bytes: boolean
    }
  | { readonly kind: 'refused'; readonly reason: string; readonly hint: string }

/** The hub's answer to a partially accepted batch (HTTP 422). */
interface HubAnswer {
  readonly error?: string
  readonly rejected?: readonly { readonly index?: number; readonly reason?: string }[]
}

/** A signed batch: the JSON body's bytes as sent, and the detached JWS for its header. */
interface Signed {
  readonly body: Uint8Array
  readonly signature: string
  /** The batch's `exp`, epoch ms. */
  readonly expMs: number
  /** The `dropped` it reports: what a delivery of it settles (a copy sent again reports the same). */
  readonly dropped: number
}

/** Batches delivered in a row after a 413 before the batch size is doubled back. */
const REGROW_AFTER = 100

/** Room kept in a body for what surrounds the events (`{"v":2,"iat":…,"jti":"…","dropped":…,"events":[…]}`). */
const BODY_OVERHEAD = 256

/** A batch is sent again as it was only with at least this much of its lifetime left (clock skew, transit). */
const RESEND_MARGIN_MS = 10_000

const HINTS: Record<number, string> = {
  400: 'the hub could not read the batch (is forward.url the hub\'s "/v1/events" endpoint?)',
  401: "the hub refused the signature: forward.key must be the hub's HS256 secret, or the Ed25519 private key whose public key the hub holds",
  404: 'no hub at forward.url (it should end with the hub\'s mount path and "/v1/events")',
  409: 'the hub saw this batch id before (replay)',
  415: `the hub expects ${BATCH_CONTENT_TYPE}: is forward.url a sqreen-auth hub?`,
}

/** An error's `code` (a system or TLS error's: ECONNRESET, DEPTH_ZERO_SELF_SIGNED_CERT), when it looks like one. */
const errorCode = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[A-Z0-9_]{2,64}$/.test(code) ? code : undefined
}

/** The hub's own `error` code when the answer is the hub's (JSON with an `error` string), else `undefined`. */
const hubErrorOf = async (contentType: string | null, text: () => Promise<string>): Promise<string | undefined> => {
  if (contentType === null || !/^application\/json\b/i.test(contentType)) return undefined
  try {
    const error = (JSON.parse(await text()) as { error?: unknown }).error
    return typeof error === 'string' && /^[a-z_]{1,40}$/.test(error) ? error : undefined
  } catch {
    return undefined
  }
}

const COMMA = 0x2c
const CLOSE_BRACKET = 0x5d
const CLOSE_BRACE = 0x7d

/**
 * The wait after a hub's `Retry-After`: never less than it asked, plus a random share of
 * up to half the backoff's ceiling (`baseDelay * 2^attempt`, at most `maxDelay`). A busy
 * hub answers every forwarder the same fixed `Retry-After: 1`; obeyed exactly, they would
 * all come back in the same instant and find it busy again. The share grows while the
 * hub stays busy, as the backoff does.
 */
export const retryAfterWait = (
  afterMs: number,
  attempt: number,
  base: number,
  max: number,
  random = Math.random,
): number => Math.round(afterMs + (random() * Math.min(max, base * 2 ** attempt)) / 2)

/** The flushes of every forwarder with `flushOnExit` in this process (see `listenForExit`). */
const flushingOnExit = new Set<() => Promise<void>>()
let exitHandlers: Map<NodeJS.Signals, () => void> | undefined

/**
 * One SIGTERM / SIGINT handler for the whole process, however many forwarders flush on
 * exit. Listening to a signal replaces Node's default action (exit). When the application
 * has no handler of its own, every forwarder flushes, then the signal is raised again so
 * the process still ends the way it would have (killed by it); when it has one, its
 * handlers run as usual and decide, and the flushes only start (close() is idempotent).
 * The handler goes first (`prependListener`): a handler the application added with
 * `process.once` removes itself when it runs, so looked at later it would seem absent
 * and the process would be killed under the application's own clean-up. One handler for
 * all forwarders: with one each, each saw the others as the application's and none
 * re-raised, or one re-raised while another was still flushing. It is removed when the
 * signal comes, so a second Ctrl+C during the flush exits at once.
 */
const listenForExit = (): void => {
  if (exitHandlers !== undefined) return
  exitHandlers = new Map()
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const handler = (): void => {
      const alone = process.listeners(signal).every((listener) => listener === handler)
      stopListeningForExit()
      const flushes = [...flushingOnExit].map((flush) => flush())
      void Promise.allSettled(flushes).then(() => {
        if (alone) process.kill(process.pid, signal)
      })
    }
    exitHandlers.set(signal, handler)
    process.prependListener(signal, handler)
  }
}

const stopListeningForExit = (): void => {
  if (exitHandlers === undefined) return
  for (const [signal, handler] of exitHandlers) process.off(signal, handler)
  exitHandlers = undefined
}

/**
 * Ships `AuthEvent`s (already past the identity boundary) to a Security Hub in
 * signed batches. Nothing here is on the request path: `push` appends to a
 * bounded queue and a timer (unref'ed, so the forwarder never keeps a process
 * alive) or a full batch starts a send. One batch is in flight at a time, which
 * keeps a user's events in order at the hub and bounds our load on it.
 *
 * While the hub is unreachable the queue fills and then drops its *oldest*
 * events (counted in `forward.dropped`): after an outage, what matters for a
 * "risk rose within 24 hours" alert is the most recent activity.
 */
export const createForwarder = (
  config: ForwardConfig,
  fetchFn: () => Promise<FetchLike>,
  diag: Diagnostics,
): Forwarder => {
  // A ring buffer: push, drop-oldest, take and put-back never copy what is queued. It holds
  // each event as its JSON text, made when it is pushed (see `push`).
  const queue = new EventQueue<string>(Math.min(config.maxQueued, 1024))
  let inflight: string[] = []
  /** Events dropped since the last batch the hub accepted; reported in the next batch. */
  let droppedUnreported = 0
  /**
   * Halved when the hub answers 413. Kept after a success (each 413 costs the hub a read,
   * a verification and a parse of the whole batch), and doubled back only after
   * `REGROW_AFTER` batches delivered in a row, in case the hub's limit was raised.
   */
  let batchLimit = config.batchSize
  let deliveredSinceSplit = 0
  /** The limit before a chain of 413 halvings began: restored if the chain ends on one oversized event. */
  let limitBeforeSplit: number | undefined
  /**
   * Bytes of the smallest body answered 413 (the hub's limit, or a proxy's in front of it:
   * nginx's `client_max_body_size`). Batches are then packed below it, and an event too
   * large for it alone is dropped without being sent. Without it, each oversized event in a
   * row started a new chain of halvings from the full batch size, re-sending most of the
   * queue each time: behind a 4 kB limit, 500 such events cost 3,998 requests and 1.1 GB.
   * Doubled after `REGROW_AFTER` batches delivered in a row, in case the limit was raised.
   */
  let bodyCap: number | undefined
  let deliveredSinceCap = 0
  /**
   * The signed form of a batch the hub did not answer (a timeout, a 5xx), put back in front
   * of the queue: while it is still valid it is sent again as it was, same `jti`. If the hub
   * had in fact received it (it answered after our timeout), the copy is refused as a
   * replay (409) instead of scored again: the hub's memory of event ids is bounded, and a
   * busy hub can have forgotten them by the time a retry comes.
   */
  let resend: { readonly events: readonly string[]; readonly signed: Signed; readonly untilMs: number } | undefined
  let attempt = 0
  let timer: NodeJS.Timeout | undefined
  /** A backoff (or Retry-After) wait is running: nothing is sent until it ends. */
  let backingOff = false
  let backoffWake: (() => void) | undefined
  let pumping = false
  /** flush() or close() asked for everything, not only full batches. */
  let drainRequested = false
  let closed = false
  let closing: Promise<void> | undefined
  let controller: AbortController | undefined
  let idle: (() => void)[] = []

  const queued = (): number => queue.length
  const size = (): number => queued() + inflight.length

  const settle = (): void => {
    if (size() > 0 || idle.length === 0) return
    const waiting = idle
    idle = []
    for (const resolve of waiting) resolve()
  }

  const take = (n: number): string[] => queue.take(n)

  /** Puts a batch that could not be delivered back in front, in order. */
  const putBack = (batch: string[]): void => queue.putBack(batch)

  const drop = (n: number): void => {
    diag.count('forward.dropped', n)
    droppedUnreported += n
    diag.warn(
      'forward_queue_full',
      `more than ${config.maxQueued} events are waiting for the hub (is it down?); the oldest are dropped.`,
    )
  }

  const preparedKey = preparedJoseKey(config.key.alg, config.key.key, 'sign')

  const sign = async (events: readonly string[]): Promise<Signed> => {
    // Real time, not the `clock` option: iat/exp are checked by another machine's clock.
    const iat = Math.floor(Date.now() / 1000)
    const dropped = droppedUnreported
    const head = `{"v":${WIRE_VERSION},"iat":${iat},"exp":${iat + config.expiresInSeconds},"jti":"${randomUUID()}","dropped":${dropped},"events":[`
    // The batch's JSON as UTF-8 bytes, written once into a buffer of its exact size around
    // the events' own JSON: these bytes are signed and sent as they are. (As a string the
    // body was joined, flattened, encoded for the signature and encoded again by fetch:
    // four passes over a few hundred kilobytes per batch, each a fresh allocation: the
    // forwarder's own CPU per event, in-process against a receiver, went from 4.8-5.7 to
    // 4.2-4.8 µs; in the login server it is below what bench/forward-ab.ts resolves.) JSON.stringify never
    // emits a lone surrogate (it escapes them), so every event is well-formed UTF-16 and
    // `byteLength` is what `write` writes.
    let size = head.length + 2 + Math.max(0, events.length - 1)
    for (let i = 0; i < events.length; i++) size += Buffer.byteLength(events[i] as string, 'utf8')
    const body = Buffer.allocUnsafe(size)
    let at = body.write(head, 0, 'latin1')
    for (let i = 0; i < events.length; i++) {
      if (i > 0) body[at++] = COMMA
      at += body.write(events[i] as string, at, 'utf8')
    }
    body[at++] = CLOSE_BRACKET
    body[at++] = CLOSE_BRACE
    // FlattenedSign, not CompactSign: jose's CompactSign refuses `b64: false`. With it the
    // signature covers the body bytes as they are, and the hub verifies them without
    // base64url-decoding the batch.
    const jws = await new FlattenedSign(body)
      .setProtectedHeader({ alg: config.key.alg, typ: BATCH_TYP, b64: false, crit: ['b64'] })
      .sign(await preparedKey())
    return {
      body,
      signature: `${jws.protected}..${jws.signature}`,
      expMs: (iat + config.expiresInSeconds) * 1000,
      dropped,
    }
  }

  const classify = async (
    status: number,
    retryAfter: string | null,
    text: () => Promise<string>,
    count: number,
    contentType: string | null = null,
  ): Promise<Outcome> => {
    if (status >= 200 && status < 300) return { kind: 'sent', rejected: 0 }
    if (status === 422) {
      // Delivered: the hub kept the valid events and says which it refused. Retrying cannot help.
      let rejected = 0
      let reason: string | undefined
      try {
        const answer = JSON.parse(await text()) as HubAnswer
        rejected = Array.isArray(answer.rejected) ? answer.rejected.length : 0
        const first = answer.rejected?.[0]?.reason
        if (typeof first === 'string') reason = first.slice(0, 80)
      } catch {
        rejected = count
      }
      return reason === undefined ? { kind: 'sent', rejected } : { kind: 'sent', rejected, reason }
    }
    if (status === 413) {
      // The hub's own 413 may be about the count of events (`limits.events`), which halving
      // fixes, not about bytes: a byte cap from it would drop larger events the hub takes.
      const counted = (await hubErrorOf(contentType, text)) === 'too_many_events'
      return { kind: 'split', reason: counted ? 'HTTP 413 too_many_events' : 'HTTP 413', bytes: !counted }
    }
    if (status === 401) {
      // The batch's times (`iat`, `exp`) refused: this machine's clock and the hub's disagree.
      // Not the key's fault, and it can be fixed without a restart: kept and retried.
      let answer: HubAnswer & { message?: unknown } = {}
      try {
        answer = JSON.parse(await text()) as HubAnswer & { message?: unknown }
      } catch {}
      // `bad_claim` also means a wrong typ or a bad jti (a version mismatch: permanent);
      // only one that names a time is the clock's.
      const aboutTimes = typeof answer.message === 'string' && /"(iat|exp|nbf)"/.test(answer.message)
      if (answer.error === 'expired' || (answer.error === 'bad_claim' && aboutTimes)) {
        return {
          kind: 'retry',
          reason: `HTTP 401 ${answer.error}: the hub refused the batch's times; is this machine's clock right (the hub allows its clockTolerance)?`,
          // Signed again, with the time then: the same bytes would be refused the same way.
          resign: true,
        }
      }
    }
    // A replayed jti: the hub already has this batch (a copy sent again after a timeout).
    if (status === 409) return { kind: 'sent', rejected: 0 }
    if (status === 408 || status === 429 || status >= 500) {
      const after = retryAfterMs(retryAfter)
      return after === undefined
        ? { kind: 'retry', reason: `HTTP ${status}` }
        : { kind: 'retry', afterMs: after, reason: `HTTP ${status}` }
    }
    if (status >= 300 && status < 400)
      return { kind: 'refused', reason: `HTTP ${status}`, hint: 'redirects are not followed' }
    // The hint names the hub only when the hub answered: its answers are JSON with an
    // `error`. A proxy in front of it (nginx's 400 for http on its TLS port, a 401 of its
    // own authentication, an HTML 404) would otherwise send the operator to check the key.
    const hubError = await hubErrorOf(contentType, text)
    if (hubError === undefined) {
      return {
        kind: 'refused',
        reason: `HTTP ${status} (${contentType ?? 'no content type'}) from something at forward.url that is not the hub`,
        hint: 'check forward.url (scheme, port, path) and whatever answers there in front of the hub: a proxy, its TLS port, its own authentication',
      }
    }
    return {
      kind: 'refused',
      reason: `HTTP ${status} ${hubError}`,
      hint: HINTS[status] ?? 'see the hub logs',
    }
  }

  const send = async (events: readonly string[], again: Signed | undefined): Promise<Outcome> => {
    let signed: Signed
    try {
      signed = again ?? (await sign(events))
    } catch (err) {
      diag.error('forward_sign_failed', 'a batch could not be signed; it was dropped', err)
      return { kind: 'refused', reason: 'signing failed', hint: 'check forward.key' }
    }
    lastSigned = signed
    const fetch = await fetchFn()
    // Twice at most: once more at once when a kept-alive connection was reset under the
    // request (a proxy's keepalive_timeout closing it as it was reused). The same bytes and
    // `jti`: if the hub did take the first, the second is refused as a replay (409, delivered).
    for (let tries = 0; ; tries++) {
      controller = new AbortController()
      const abort = controller
      const timeout = setTimeout(() => abort.abort(), config.timeoutMs)
      try {
        const res = await fetch(config.url, {
          method: 'POST',
          headers: {
            'content-type': BATCH_CONTENT_TYPE,
            [BATCH_SIGNATURE_HEADER]: signed.signature,
            'user-agent': 'sqreen-auth',
          },
          body: signed.body,
          redirect: 'manual',
          signal: abort.signal,
        })
        let body: Promise<string> | undefined
        // The body is read once: for 422's details, else drained so the connection is reused.
        const text = (): Promise<string> => {
          body ??= res.text()
          return body
        }
        const outcome = await classify(
          res.status,
          res.headers.get('retry-after'),
          text,
          events.length,
          res.headers.get('content-type'),
        )
        await text().catch(() => '')
        return outcome
      } catch (err) {
        if (abort.signal.aborted) return { kind: 'retry', reason: 'timeout' }
        const code = errorCode(err)
        if (tries === 0 && (code === 'ECONNRESET' || code === 'EPIPE')) {
          diag.count('forward.resets')
          continue
        }
        // The system's or TLS's code says what to fix: ECONNREFUSED, ENOTFOUND, DEPTH_ZERO_SELF_SIGNED_CERT.
        const name = err instanceof Error ? err.name : 'error'
        return { kind: 'retry', reason: code === undefined ? name : `${name} ${code}` }
      } finally {
        clearTimeout(timeout)
        controller = undefined
      }
    }
  }

  let lastSigned: Signed | undefined

  /**
   * The batch to send next: the one put back, signed as before while it is still valid, else
   * a new one, below `bodyCap` when there is one. `oversized`: the first event alone does not
   * fit under it (the batch is that one event, not to be sent).
   */
  const nextBatch = (): { events: string[]; again: Signed | undefined; oversized: boolean } => {
    const previous = resend
    resend = undefined
    if (previous !== undefined && Date.now() < previous.untilMs && queued() >= previous.events.length) {
      // Still at the front, whole (drop-oldest may have taken some of it while it waited).
      let same = true
      for (let i = 0; i < previous.events.length && same; i++) same = queue.at(i) === previous.events[i]
      if (same) return { events: take(previous.events.length), again: previous.signed, oversized: false }
    }
    let count = Math.min(batchLimit, config.batchSize, queued())
    if (bodyCap !== undefined) {
      // The body's own bytes around the events (`sign`), with room to spare, then each event and its comma.
      let bytes = BODY_OVERHEAD
      let fit = 0
      for (; fit < count; fit++) {
        const next = Buffer.byteLength(queue.at(fit) as string, 'utf8') + 1
        if (bytes + next >= bodyCap) break
        bytes += next
      }
      if (fit === 0) return { events: take(1), again: undefined, oversized: true }
      count = fit
    }
    return { events: take(count), again: undefined, oversized: false }
  }

  const waitBackoff = async (ms: number): Promise<void> => {
    backingOff = true
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms)
      t.unref()
      backoffWake = () => {
        clearTimeout(t)
        resolve()
      }
    })
    backoffWake = undefined
    backingOff = false
  }

  /**
   * Sends batches while there is a full one, or everything when `all` (the flush
   * timer fired, flush() or close()). Only one pump runs at a time.
   */
  const pump = async (all: boolean): Promise<void> => {
    if (pumping) return
    pumping = true
    try {
      while (queued() > 0 && (all || drainRequested || queued() >= config.batchSize)) {
        const next = nextBatch()
        if (next.oversized) {
          // Larger alone than a body already refused as too large: sending it cannot help.
          diag.count('forward.failed')
          diag.error(
            'forward_refused',
            `an event of ${Buffer.byteLength(next.events[0] as string, 'utf8')} bytes is larger than the hub (or a proxy in front of it) accepts: a body of ${bodyCap} bytes was answered 413; the event was dropped`,
          )
          continue
        }
        inflight = next.events
        lastSigned = undefined
        const outcome = await send(inflight, next.again)
        const batch = inflight
        inflight = []
        // close() gave up on this batch while it was in flight (and counted it).
        if (closed) return
        if (outcome.kind === 'sent') {
          attempt = 0
          if (bodyCap !== undefined && ++deliveredSinceCap >= REGROW_AFTER) {
            bodyCap *= 2
            deliveredSinceCap = 0
          }
          if (batchLimit < config.batchSize && ++deliveredSinceSplit >= REGROW_AFTER) {
            batchLimit = Math.min(config.batchSize, batchLimit * 2)
            deliveredSinceSplit = 0
            if (batchLimit === config.batchSize) limitBeforeSplit = undefined
          }
          // The next outage or refusal is logged again (each is logged once).
          diag.rearm('forward_unreachable')
          diag.rearm('forward_refused')
          // What this batch reported (when it was signed), not what has been dropped since.
          droppedUnreported -= (lastSigned as Signed | undefined)?.dropped ?? 0
          diag.count('forward.batches')
          diag.count('forward.sent', batch.length - outcome.rejected)
          if (outcome.rejected > 0) {
            diag.count('forward.rejected', outcome.rejected)
            diag.warn(
              'forward_events_rejected',
              `the hub refused ${outcome.rejected} event(s) of a batch${outcome.reason ? ` (first reason: ${outcome.reason})` : ''}; the others were kept.`,
            )
          }
          continue
        }
        if (outcome.kind === 'split' && outcome.bytes) {
          // (Set by send(); read through a cast, as TypeScript keeps the narrowing of before the await.)
          const refused = (lastSigned as Signed | undefined)?.body.byteLength
          if (refused !== undefined && (bodyCap === undefined || refused < bodyCap)) bodyCap = refused
          deliveredSinceCap = 0
        }
        if (outcome.kind === 'split' && batch.length > 1) {
          // Too large for the hub's body limit: halve the batches until they fit.
          limitBeforeSplit ??= batchLimit
          batchLimit = Math.max(1, Math.floor(batch.length / 2))
          deliveredSinceSplit = 0
          putBack(batch)
          continue
        }
        if (outcome.kind === 'retry') {
          putBack(batch)
          // Sent again as it was while it has a few seconds of validity left (see `resend`).
          // (Set by send(); read through a cast, as TypeScript keeps the narrowing of before the await.)
          const sent = lastSigned as Signed | undefined
          if (sent !== undefined && outcome.resign !== true) {
            resend = { events: batch, signed: sent, untilMs: sent.expMs - RESEND_MARGIN_MS }
          }
          diag.count('forward.retries')
          diag.warn(
            'forward_unreachable',
            `the hub did not take a batch (${outcome.reason}); retrying with backoff, events are kept (up to ${config.maxQueued}).`,
          )
          if (closed) return
          const delay =
            outcome.afterMs === undefined
              ? backoff(attempt, config.baseDelayMs, config.maxDelayMs)
              : retryAfterWait(outcome.afterMs, attempt, config.baseDelayMs, config.maxDelayMs)
          attempt++
          await waitBackoff(delay)
          if (closed) return
          continue
        }
        // Refused for good (or a single event too large): retrying the same bytes cannot help.
        if (outcome.kind === 'split' && limitBeforeSplit !== undefined) {
          // The halving chased one event too large for the hub, not a limit the others meet.
          batchLimit = limitBeforeSplit
          limitBeforeSplit = undefined
        }
        diag.count('forward.failed', batch.length)
        diag.error(
          'forward_refused',
          `the hub refused a batch of ${batch.length} event(s) (${outcome.reason}): ${outcome.kind === 'refused' ? outcome.hint : 'one event is larger than the hub accepts'}; the batch was dropped`,
        )
      }
    } finally {
      pumping = false
      if (queued() === 0) drainRequested = false
      settle()
      // Events that arrived while the last batch was in flight wait for the timer.
      if (!closed && queued() > 0) schedule()
    }
  }

  const onTimer = (): void => {
    timer = undefined
    void pump(true)
  }

  const schedule = (): void => {
    if (closed || pumping || backingOff) return
    if (queued() >= config.batchSize) {
      if (timer) clearTimeout(timer)
      timer = undefined
      // setImmediate, not now: events pushed in the same turn join the batch.
      setImmediate(() => void pump(false))
      return
    }
    if (timer === undefined) {
      timer = setTimeout(onTimer, config.flushIntervalMs)
      timer.unref()
    }
  }

  const flush = async (): Promise<void> => {
    if (timer) clearTimeout(timer)
    timer = undefined
    // A flush does not wait for a long backoff: try now, then back off as usual.
    backoffWake?.()
    drainRequested = true
    const done = size() === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve))
    void pump(true)
    await done
  }

  const close = (timeoutMs = config.closeTimeoutMs): Promise<void> => {
    closing ??= (async () => {
      flushingOnExit.delete(exitFlush)
      if (flushingOnExit.size === 0) stopListeningForExit()
      let deadline: NodeJS.Timeout | undefined
      await Promise.race([flush(), new Promise<void>((resolve) => (deadline = setTimeout(resolve, timeoutMs)))])
      clearTimeout(deadline)
      closed = true
      if (timer) clearTimeout(timer)
      backoffWake?.()
      controller?.abort()
      const left = size()
      if (left > 0) {
        diag.count('forward.abandoned', left)
        diag.error(
          'forward_abandoned',
          `${left} event(s) could not be delivered to the hub within ${timeoutMs} ms of close(); they were dropped`,
        )
      }
      queue.clear()
      inflight = []
      settle()
    })()
    return closing
  }

  const exitFlush = (): Promise<void> => close()
  if (config.flushOnExit) {
    flushingOnExit.add(exitFlush)
    listenForExit()
  }

  return {
    push(event) {
      // While close() flushes (a SIGTERM with flushOnExit: the app still answers requests
      // during its graceful shutdown) events are still taken: the flush sends them too,
      // within closeTimeout. Only once closed are they dropped.
      if (closed) {
        diag.count('forward.dropped')
        return
      }
      // As JSON text, made now: the queue then holds one flat string per event instead of
      // the event's objects (the event, its identity, attempts and their strings), which
      // wait here for up to a batch or `flushInterval`, long enough to be copied by young
      // collections and promoted. Same-run A/B of the login app forwarding to a hub
      // (bench/forward-ab.ts, 8 rounds): 1.022 times the throughput (A/A 1.002), CPU per
      // login 0.970. It also means one event that cannot be written as JSON is skipped
      // alone; written at signing time it failed its whole batch.
      // Before anything is dropped to make room: a refused event must not cost a queued one.
      let json: string | undefined
      try {
        // `undefined` too (a `toJSON` answering it): joined, it would break the batch's JSON.
        json = JSON.stringify(event) as string | undefined
        if (typeof json !== 'string') throw new TypeError('the event has no JSON form')
      } catch (err) {
        diag.count('forward.failed')
        diag.error('forward_serialize_failed', 'an event could not be written as JSON; it was not forwarded', err)
        return
      }
      if (size() >= config.maxQueued) {
        if (queued() > 0) {
          queue.dropOldest()
        } else {
          // Everything queued is in flight: the newest event is the one to go.
          drop(1)
          return
        }
        drop(1)
      }
      queue.push(json)
      schedule()
    },
    flush,
    close,
    get size() {
      return size()
    },
  }
}
