import { Buffer, isUtf8 } from 'node:buffer'
import { decodeProtectedHeader, flattenedVerify } from 'jose'
import type { Diagnostics } from '../diagnostics.js'
import type { AuthEvent } from '../event.js'
import { type JoseKey, preparedJoseKey } from '../jose-key.js'
import type { createRiskEngine } from '../risk/engine.js'
import { MemoryStore } from '../store/memory.js'
import type { Store, StoreOp } from '../store/store.js'
import { Interner } from './interner.js'
import type { VerificationKey } from './keys.js'
import type { HubConfig } from './options.js'
import { ReorderBuffer } from './reorder.js'
import { RecentIds, ReplayCache } from './replay.js'
import { checkEvent, type SchemaLimits } from './schema.js'
import type { HubViews } from './views.js'

/**
 * The forwarder's wire format, version 2 (lib/transport/wire.ts holds the sender's
 * copy and describes it; stages only import backwards, and spec/hub.ingest.spec.ts
 * checks they agree): a JSON body, signed by a detached JWS with an unencoded
 * payload in the `Sqreen-Signature` header.
 */
// A media type of its own, not application/json: an application-wide express.json()
// (type application/json by default) then leaves the signed bytes to the hub.
export const BATCH_CONTENT_TYPE = 'application/vnd.sqreen-auth.batch+json'
export const BATCH_SIGNATURE_HEADER = 'sqreen-signature'
export const BATCH_TYP = 'sqreen-auth-batch'
export const WIRE_VERSION = 2

/** Only `createRiskEngine`'s public surface is used: the engine's internals are not a contract. */
type RiskEngine = ReturnType<typeof createRiskEngine>

/**
 * Events older than this are refused: the engine keeps ledger entries 30 days, so older
 * ones could only be dropped (or, worse, evict newer ones).
 */
const MAX_EVENT_AGE_MS = 30 * 86_400_000

/**
 * Events held for reordering at most; past it the earliest are scored at once. A count,
 * not bytes: 100,000 forwarder-like events (a login failure with a short identity, about
 * 500 bytes of JSON each) hold about 80 MB of heap, but the schema lets an event be
 * 20 kB of JSON (16 identity values, 32 properties, 16 attempts, long keys), and 100,000
 * of those hold 2.5 GB (4.5 GB in non-Latin-1 text), measured: a key holder could take the
 * hub down with them. So their JSON is bounded too (`limits.held`, 64 MiB by default),
 * which ordinary events never reach before the count.
 */
const MAX_HELD = 100_000

/**
 * How long a shared store remembers an event id (at least as long as the batch that
 * carried it can be replayed). The forwarder re-sends events whose answer was lost in
 * a new batch (a new `jti`) after its backoff, a minute at most by default plus its
 * 10 s timeout: two minutes cover that, and keep the marks (one small Redis key per
 * event) to two minutes of traffic.
 */
const EVENT_ID_TTL_MS = 2 * 60_000

/**
 * Replay marks in a shared store. Store keys are owners (lib/risk/detectors.ts):
 * userKeys are `id:…`, `login:…` or URI-encoded composites (no `:`), IPs `ip:…`,
 * so `hub:…` names no user or IP the hub's own middleware would score. A forwarder
 * may still send any string as a userKey, so the field is one the engine never
 * uses either: a mark can only meet another mark.
 */
const REPLAY_FIELD = 'hub:replay'

/** A `jti` safe to use as it is: what `randomUUID()` (the forwarder's) and most generators give. */
const PLAIN_JTI = /^[A-Za-z0-9_-]{1,128}$/

/**
 * The store key of a batch id. A `jti` is any string of 1 to 128 UTF-16 code units
 * (checked by the verifier), chosen by the sender: a plain one is used as it is, any
 * other is written as base64url of its UTF-16 code units, which is lossless (lone
 * surrogates included, which `encodeURIComponent` throws on and UTF-8 would replace)
 * and at most 342 characters. The two forms have different prefixes, so they never meet.
 */
export const batchKey = (jti: string): string =>
  PLAIN_JTI.test(jti) ? `hub:jti:${jti}` : `hub:jti64:${Buffer.from(jti, 'utf16le').toString('base64url')}`

/** The store key of an event id, which the schema check limits to 1 to 64 letters, digits, - or _. */
export const eventKey = (id: string): string => `hub:event:${id}`

/**
 * The store several hubs may share (the documented Redis setup): one the application passed
 * in that is not a MemoryStore. A MemoryStore lives and dies with this process, so what it
 * would decide across processes (replays, event ids, dashboard sessions) is decided in
 * process instead, exactly and more cheaply.
 */
export const sharedStore = (config: Pick<HubConfig, 'store'>): Store | undefined =>
  config.store !== undefined && !(config.store instanceof MemoryStore) ? config.store : undefined

export interface Rejection {
  readonly index: number
  readonly reason: string
}

/** What `POST /v1/events` answers: a status and a JSON body (plus Retry-After for 503). */
export interface IngestResult {
  readonly status: number
  readonly body: {
    readonly accepted?: number
    readonly duplicates?: number
    readonly rejected?: readonly Rejection[]
    readonly error?: string
    readonly message?: string
  }
  readonly retryAfterSeconds?: number
}

export interface Ingest {
  /**
   * Verifies a signed batch (the raw body and its detached JWS) and scores its valid
   * events, or holds them to be scored in time order (`reorderWindow`). Never throws.
   */
  ingest(body: Uint8Array, signature: string | undefined): Promise<IngestResult>
  /** Scores the events held for reordering now, and waits for them. */
  flush(): Promise<void>
  /**
   * Refuses every batch from now on (503 `closing`), waits for the batches being
   * verified or scored (at most `timeoutMs`), then scores what they left held.
   * Idempotent: every call waits for the same end.
   */
  close(timeoutMs: number): Promise<void>
  readonly busy: number
}

const refuse = (status: number, error: string, message: string, retryAfterSeconds?: number): IngestResult =>
  retryAfterSeconds === undefined
    ? { status, body: { error, message } }
    : { status, body: { error, message }, retryAfterSeconds }

const REPLAYED = refuse(409, 'replayed', 'this batch (jti) was already received')

/**
 * How long a hub that is shutting down asks senders to wait. Long enough not to spin
 * against a hub that is going away, short enough that a restart or a balancer's other
 * hub gets the events soon. The forwarder retries any 5xx, after Retry-After when given.
 */
export const CLOSING_RETRY_AFTER_SECONDS = 5

/** What a hub that is shutting down answers: not scored, to be sent again. */
export const CLOSING = refuse(
  503,
  'closing',
  'the hub is shutting down; the batch was not scored, retry later',
  CLOSING_RETRY_AFTER_SECONDS,
)

/**
 * The largest `dropped` a batch may add to `hub.dropped_upstream`. A forwarder holds at
 * most 10,000,000 events and reports the ones it dropped since its last delivered batch,
 * so a billion is more than any real outage; it keeps the counter exact (far below
 * 2^53) however many batches claim it, where a forged or buggy `1e308` made it Infinity.
 */
export const MAX_DROPPED_PER_BATCH = 1_000_000_000

/**
 * Until when (epoch ms) a batch expiring at `exp` must stay remembered: past the last
 * instant the verifier still accepts it. The verifier compares whole seconds
 * (`exp <= floor(now) - tolerance` refuses), so a fractional `exp` stays acceptable until
 * the second after it; `(exp + tolerance) * 1000` forgot it up to a second early, and a
 * replay in that second was accepted. One second past `floor(exp)` covers every case.
 */
export const replayableUntilMs = (exp: number, toleranceSeconds: number): number =>
  (Math.floor(exp) + Math.ceil(toleranceSeconds) + 1) * 1000

/**
 * Without Retry-After: the forwarder then backs off exponentially (up to its maxDelay),
 * which suits an outage of unknown length better than a fixed pause.
 */
const STORE_UNAVAILABLE = refuse(
  503,
  'store_unavailable',
  'the store the hub shares replay protection through could not be reached; the batch was not scored, retry later',
)

const badClaim = (name: string): IngestResult =>
  refuse(401, 'bad_claim', `the batch claim "${name}" is missing or invalid`)

const NOT_DETACHED = refuse(
  400,
  'malformed',
  `the ${BATCH_SIGNATURE_HEADER} header must hold a detached JWS ("<protected header>..<signature>") of the body`,
)

const ENCODED_PAYLOAD = refuse(
  401,
  'bad_claim',
  'the batch signature header must have "b64": false and "crit": ["b64"] (it signs the body bytes as they are)',
)

/**
 * Whether a JWS protected header that jose refused asks for an encoded payload: no
 * `b64: false`, or `b64` not listed in `crit` (without it jose, like any implementation
 * that does not know the extension, takes the payload as base64url: RFC 7797 section 6).
 * Read only to say why a batch was refused; nothing of it is trusted.
 */
const asksForEncodedPayload = (encodedHeader: string): boolean => {
  try {
    const header = decodeProtectedHeader({ protected: encodedHeader })
    return header.b64 !== false || !Array.isArray(header.crit) || !header.crit.includes('b64')
  } catch {
    return false
  }
}

/** jose's error codes, read as the sender should understand them (never echoing batch content). */
const verificationFailure = (err: unknown, encodedHeader: string): IngestResult => {
  const code = (err as { code?: unknown })?.code
  switch (code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return refuse(401, 'alg_not_allowed', 'the batch is not signed with the algorithm of the hub key')
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return refuse(401, 'bad_signature', 'the batch signature does not verify with the hub key')
    case 'ERR_JOSE_NOT_SUPPORTED':
      // With the algorithm pinned, only a `crit` extension other than b64 gets here.
      return refuse(401, 'bad_claim', 'the batch signature header lists a critical extension the hub does not know')
    case 'ERR_JWS_INVALID':
      // jose verifies an unencoded payload only when the header says so; a header that
      // does not is a JWS over base64url(body), which a v2 hub never accepts (no downgrade).
      if (asksForEncodedPayload(encodedHeader)) return ENCODED_PAYLOAD
      return NOT_DETACHED
    default:
      return NOT_DETACHED
  }
}

/** Media types compare case-insensitively, and `typ` may leave out "application/" (RFC 7515 section 4.1.9). */
const normalizeTyp = (typ: string): string => {
  const lower = typ.toLowerCase()
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower
}

const EXPECTED_TYP = normalizeTyp(BATCH_TYP)

/** A batch whose signature, header and claims were checked. */
export interface VerifiedBatch {
  readonly jti: string
  readonly iat: number
  readonly exp: number
  readonly events: unknown
  readonly dropped: unknown
}

export type Verification =
  | {
      readonly ok: true
      readonly batch: VerifiedBatch
      /** Which of the hub's keys verified it: 0 is the current one, higher ones are being retired. */
      readonly keyIndex: number
    }
  | { readonly ok: false; readonly refusal: IngestResult }

export interface VerifyLimits {
  /** Longest lifetime (`exp - iat`) and age (now - `iat`) of a batch, seconds. */
  readonly maxTokenAgeSeconds: number
  /** Clock skew allowed on `iat`, `nbf` and `exp`, seconds. */
  readonly clockToleranceSeconds: number
}

/**
 * The body as text, or `undefined` when it is not UTF-8. Node's `isUtf8` and
 * `toString('utf8')` (both native and vectorised) rather than a fatal `TextDecoder`,
 * which cost several times more on a batch of 500 events; a leading byte-order mark
 * is dropped, as `TextDecoder` does.
 */
const utf8Text = (body: Uint8Array): string | undefined => {
  let bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  if (!isUtf8(bytes)) return undefined
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3)
  return bytes.toString('utf8')
}

const isNumericDate = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value)

export type BatchVerifier = (body: Uint8Array, signature: string | undefined, nowMs?: number) => Promise<Verification>

/**
 * Verifies a batch as the wire format defines it: the signature first (jose, each key's
 * one algorithm, an unencoded payload only), then the header's `typ`, then the body is
 * parsed once and the claims that `jwtVerify` checked for version 1 are checked here,
 * with the same answers. With several keys (a rotation, the current one first) the
 * signature is checked against each in turn until one verifies it; only a wrong
 * signature or another key's algorithm moves on to the next key, anything else about
 * the JWS is refused at once. Exported so that bench/hub.ts measures exactly this path.
 */
export const createBatchVerifier = (keys: readonly VerificationKey[], limits: VerifyLimits): BatchVerifier => {
  // `crit: { b64: true }`: b64 is understood, and only when integrity protected. jose
  // verifies the body bytes as they are only when the protected header has `b64: false`
  // and lists b64 in `crit`; otherwise it wants a base64url string as the payload and
  // refuses the bytes, so an encoded-payload JWS can never verify here (no downgrade).
  const options = keys.map((key) => ({ algorithms: [key.alg], crit: { b64: true } }))
  const preparedKeys = keys.map((key) => preparedJoseKey(key.alg, key.key, 'verify'))
  const tolerance = limits.clockToleranceSeconds
  const maxAge = limits.maxTokenAgeSeconds
  return async (body, signature, nowMs = Date.now()) => {
    const refused = (refusal: IngestResult): Verification => ({ ok: false, refusal })
    // `<protected>..<signature>`: the empty middle is where an attached payload would be.
    const parts = signature?.split('.')
    if (parts?.length !== 3 || parts[1] !== '') return refused(NOT_DETACHED)
    const encodedHeader = parts[0] as string
    const jws = { protected: encodedHeader, signature: parts[2] as string, payload: body }
    let typ: unknown
    let keyIndex = 0
    /** The refusal to give if no key verifies: a wrong signature outranks another algorithm. */
    let failure: unknown
    for (; keyIndex < keys.length; keyIndex++) {
      // Outside the try: a key that cannot be imported is the hub's fault (500), not the batch's.
      const key = await (preparedKeys[keyIndex] as () => Promise<JoseKey>)()
      try {
        const verified = await flattenedVerify(jws, key, options[keyIndex])
        typ = verified.protectedHeader?.typ
        failure = undefined
        break
      } catch (err) {
        const code = (err as { code?: unknown })?.code
        if (code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' && code !== 'ERR_JOSE_ALG_NOT_ALLOWED') {
          return refused(verificationFailure(err, encodedHeader))
        }
        if (failure === undefined || code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') failure = err
      }
    }
    if (failure !== undefined) return refused(verificationFailure(failure, encodedHeader))
    if (typeof typ !== 'string' || normalizeTyp(typ) !== EXPECTED_TYP) return refused(badClaim('typ'))

    // Parsed once, only now that the bytes are known to come from a key holder.
    let claims: unknown
    try {
      const text = utf8Text(body)
      if (text === undefined) throw new TypeError('not UTF-8')
      claims = JSON.parse(text)
    } catch {
      return refused(refuse(400, 'malformed', 'the batch body is not UTF-8 JSON'))
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
      return refused(refuse(400, 'malformed', 'the batch body is not a JSON object'))
    const { iat, exp, nbf, jti, v, events, dropped } = claims as Record<string, unknown>
    const now = Math.floor(nowMs / 1000)
    if (!isNumericDate(iat)) return refused(badClaim('iat'))
    if (!isNumericDate(exp)) return refused(badClaim('exp'))
    if (nbf !== undefined && (!isNumericDate(nbf) || nbf > now + tolerance)) return refused(badClaim('nbf'))
    if (exp <= now - tolerance)
      return refused(refuse(401, 'expired', 'the batch has expired (exp); check the sender clock'))
    // Implied by exp and the lifetime below, but answered as jwtVerify's maxTokenAge did.
    if (now - iat - tolerance > maxAge)
      return refused(refuse(401, 'expired', 'the batch was issued too long ago (iat); check the sender clock'))
    if (iat > now + tolerance) return refused(badClaim('iat'))
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 128)
      return refused(refuse(401, 'bad_claim', 'the batch claim "jti" must be a string of 1 to 128 characters'))
    if (exp - iat > maxAge)
      return refused(refuse(401, 'lifetime_too_long', `a batch may live at most ${maxAge} s (exp - iat)`))
    if (v !== WIRE_VERSION)
      return refused(refuse(400, 'version', `unsupported batch version (expected ${WIRE_VERSION})`))
    return { ok: true, batch: { jti, iat, exp, events, dropped }, keyIndex }
  }
}

export const createIngest = (config: HubConfig, engine: RiskEngine, views: HubViews, diag: Diagnostics): Ingest => {
  const replays = new ReplayCache(config.limits.replay)
  // Enough to cover a few minutes of batches; a re-sent batch comes back within the sender's backoff.
  const seen = new RecentIds(Math.max(100_000, config.limits.events * 100))
  const schema: SchemaLimits = { futureMs: config.clockToleranceSeconds * 1000 + 60_000, pastMs: MAX_EVENT_AGE_MS }
  const verify = createBatchVerifier(config.keys, config)
  const userAgents = new Interner(1_000)
  const ips = new Interner(10_000)
  const strategies = new Interner(100)
  /**
   * The event, its user agent, IP and strategy replaced by the copies already held (see
   * `Interner`; the schema check already did so for fields with a fixed set of values).
   */
  const shareStrings = (event: AuthEvent): AuthEvent => {
    // The schema check hands over the parsed object itself: this batch's, to rewrite.
    const e = event as { -readonly [K in keyof AuthEvent]: AuthEvent[K] }
    if (e.userAgent !== null) e.userAgent = userAgents.intern(e.userAgent)
    if (e.ip !== null) e.ip = ips.intern(e.ip)
    if (e.strategy !== null) e.strategy = strategies.intern(e.strategy)
    return e
  }
  /**
   * Where replay protection is decided when it must hold across processes (a store several
   * hubs share, which outlives a restart). For a MemoryStore the in-process caches are
   * exact, and cheaper: a mark per event id in it would cost an owner record each and,
   * past its `maxKeys`, evict users' ledgers.
   */
  const shared = sharedStore(config)
  let storeFailing = false
  /** Batches being verified or scored (at most `limits.concurrency`). */
  let busy = 0
  /** Set by `close()`: every batch from then on is answered 503 `closing`. */
  let closing: Promise<void> | undefined
  /**
   * Set once `close()` has flushed the reorder buffer for the last time. A batch that was
   * still running then (close() stopped waiting for it) scores its events at once: held,
   * they would sit behind an unref'd timer in a process about to exit, answered 200.
   */
  let flushedForClose = false
  /** Resolves `close()`'s wait when the last batch in progress ends. */
  let idle: (() => void) | undefined
  /**
   * Scores an event, then marks its user's view changed. Only then: the views mark a user
   * when its event arrives, but a list read before the event is scored (it waits out the
   * reorder window, or a remote store's round trips) caches the score from before it and
   * clears the mark; without a second mark the lists showed that score for up to a minute.
   */
  const score = (event: AuthEvent): Promise<void> | undefined => {
    const pending = engine.process(event)
    if (pending === undefined) {
      views.scored(event)
      return undefined
    }
    return pending.then(() => views.scored(event))
  }
  /** Events waiting to be scored in time order (`reorderWindow`); none when it is 0. */
  const held =
    config.reorderWindowMs > 0
      ? new ReorderBuffer(
          config.reorderWindowMs,
          MAX_HELD,
          score,
          (err) => diag.error('hub_scoring_failed', 'a held event could not be scored', err),
          Date.now,
          config.limits.held,
        )
      : undefined

  const refused = (result: IngestResult): IngestResult => {
    diag.count('hub.batches_refused')
    diag.warn(
      `hub_batch_refused.${result.body.error}`,
      `a forwarded batch was refused (HTTP ${result.status}): ${result.body.message}`,
    )
    return result
  }

  /**
   * Claims the batch id and the ids of its valid events in the shared store, in ONE
   * `run()` (one round trip; one atomic script in Redis, so of two hubs given the same
   * batch at the same moment exactly one wins). Ids this process already saw are
   * duplicates without asking: they were claimed (by someone) when first seen. Answers,
   * per valid event, whether this hub may score it; `'replayed'` when another batch
   * with this `jti` got there first; `'unavailable'` when the store failed, in which
   * case nothing is known and nothing may be scored.
   */
  const claimShared = async (
    store: Store,
    jti: string,
    expiresAtMs: number,
    nowMs: number,
    valid: readonly AuthEvent[],
  ): Promise<readonly boolean[] | 'replayed' | 'unavailable'> => {
    // Until the verifier refuses the batch as expired (`replayableUntilMs`); at least a
    // second, so that a mark is never born expired.
    const jtiTtl = Math.max(1000, Math.ceil(expiresAtMs - nowMs))
    // Never shorter than the batch's own mark (a maxTokenAge over ten minutes): while
    // the batch can be replayed, its events stay claimed too.
    const eventTtl = Math.max(jtiTtl, EVENT_ID_TTL_MS)
    const ops: StoreOp[] = [{ op: 'claim', key: batchKey(jti), field: REPLAY_FIELD, ttl: jtiTtl }]
    const asked: number[] = []
    for (let i = 0; i < valid.length; i++) {
      const id = (valid[i] as AuthEvent).id
      if (seen.has(id)) continue
      ops.push({ op: 'claim', key: eventKey(id), field: REPLAY_FIELD, ttl: eventTtl })
      asked.push(i)
    }
    let results: unknown[]
    try {
      results = await store.run(ops, nowMs)
    } catch (err) {
      storeFailing = true
      diag.count('store_errors')
      diag.error(
        'hub_replay_store_failed',
        'the shared store could not be asked whether a batch was a replay; batches are answered 503 (the forwarders retry) until it is back',
        err,
      )
      return 'unavailable'
    }
    if (storeFailing) {
      storeFailing = false
      diag.rearm('hub_replay_store_failed')
    }
    if (results[0] !== true) return 'replayed'
    const fresh = new Array<boolean>(valid.length).fill(false)
    for (let k = 0; k < asked.length; k++) {
      const i = asked[k] as number
      fresh[i] = results[k + 1] === true
      // Claimed now or before: either way a later batch with it is a duplicate.
      seen.add((valid[i] as AuthEvent).id)
    }
    return fresh
  }

  const run = async (body: Uint8Array, signature: string | undefined): Promise<IngestResult> => {
    const verified = await verify(body, signature)
    if (!verified.ok) return refused(verified.refusal)
    const { jti, exp, events, dropped } = verified.batch
    if (!Array.isArray(events)) return refused(refuse(400, 'malformed', 'the batch has no "events" array'))
    if (events.length > config.limits.events) {
      return refused(refuse(413, 'too_many_events', `a batch may hold at most ${config.limits.events} events`))
    }
    // Only after the signature and the claims: an unsigned flood must not fill the cache.
    // With a shared store this is a fast first check; the store is authoritative.
    const nowMs = Date.now()
    const expiresAtMs = replayableUntilMs(exp, config.clockToleranceSeconds)
    const claim = replays.claim(jti, expiresAtMs, nowMs)
    if (claim === 'replayed') return refused(REPLAYED)
    // A full cache only matters when it is the only protection: with a shared store,
    // the batch is simply not remembered here.
    if (claim === 'full' && shared === undefined) {
      diag.count('hub.busy')
      return refuse(503, 'busy', 'too many batches within their lifetime; retry later', 1)
    }
    // Counted before the shared store is asked: verified batches received by this hub.
    diag.count('hub.batches')
    diag.count('hub.events_in', events.length)
    // A key being retired still in use: the counter tells when it can be removed.
    if (verified.keyIndex > 0) diag.count('hub.batches_older_key')

    const now = config.clock()
    const rejected: Rejection[] = []
    // Validated first, so that one store round trip claims every event id of the batch.
    const valid: AuthEvent[] = []
    for (let index = 0; index < events.length; index++) {
      const checked = checkEvent(events[index], now, schema)
      if (checked.ok) valid.push(shareStrings(checked.event))
      else rejected.push({ index, reason: checked.reason })
    }

    // Per valid event, whether it may be scored (decided by the shared store); without
    // one, the in-process list of recent ids decides below.
    let fresh: readonly boolean[] | undefined
    if (shared !== undefined) {
      const outcome = await claimShared(shared, jti, expiresAtMs, nowMs, valid)
      if (outcome === 'unavailable') {
        // Not scored: the sender's retry (or a replay of these bytes) is judged by the store again.
        if (claim === 'ok') replays.release(jti)
        return STORE_UNAVAILABLE
      }
      if (outcome === 'replayed') return refused(REPLAYED)
      fresh = outcome
    }
    // A safe integer only (1e308 is an integer too, and made the counter Infinity), capped.
    if (typeof dropped === 'number' && Number.isSafeInteger(dropped) && dropped > 0) {
      diag.count('hub.dropped_upstream', Math.min(dropped, MAX_DROPPED_PER_BATCH))
    }

    const kept: AuthEvent[] = []
    for (let i = 0; i < valid.length; i++) {
      const event = valid[i] as AuthEvent
      if (fresh === undefined ? seen.add(event.id) : fresh[i]) kept.push(event)
    }
    const accepted = kept.length
    const duplicates = valid.length - accepted
    // What an event held for reordering weighs, for the buffer's byte bound: its share of the
    // body among the events kept. Among all the batch's entries, a body padded with 990 refused
    // `0`s made its ten large events count for a hundredth of their size.
    const eventBytes = Math.ceil(body.byteLength / Math.max(1, accepted))
    for (const event of kept) {
      views.record(event)
      if (held !== undefined && !flushedForClose) {
        held.add(event, eventBytes)
        continue
      }
      // Sequential: one user's events are scored in order. The memory store answers
      // synchronously (no promise); a remote store is awaited event by event.
      const pending = score(event)
      if (pending !== undefined) await pending
    }
    diag.count('hub.accepted', accepted)
    if (duplicates > 0) diag.count('hub.duplicates', duplicates)
    if (rejected.length > 0) {
      diag.count('hub.rejected', rejected.length)
      diag.warn(
        'hub_events_rejected',
        `forwarded events were refused by the schema check (first: ${rejected[0]?.reason})`,
      )
      return { status: 422, body: { accepted, duplicates, rejected } }
    }
    return { status: 200, body: { accepted, duplicates, rejected } }
  }

  return {
    get busy() {
      return busy
    },
    flush: () => held?.flush() ?? Promise.resolve(),
    close(timeoutMs) {
      closing ??= (async () => {
        if (busy > 0) {
          // A batch that got in before the close is answered 200 once its events are scored
          // or held: wait for it, or close() would release the store under it and leave
          // what it adds to the reorder buffer behind an unref'd timer, never scored.
          let timer: NodeJS.Timeout | undefined
          await new Promise<void>((resolve) => {
            idle = resolve
            timer = setTimeout(resolve, timeoutMs)
          })
          clearTimeout(timer)
          idle = undefined
          if (busy > 0) {
            diag.warn(
              'hub_close_timeout',
              `close() stopped waiting after ${timeoutMs} ms for ${busy} batch(es) still being scored`,
            )
          }
        }
        // Again after the wait: the batches that ended during it held their events.
        await held?.flush()
        flushedForClose = true
      })()
      return closing
    },
    async ingest(body, signature) {
      // Refused, not held: the reorder buffer is flushed once more by close() and no
      // longer after it, so an event accepted now would be answered 200 and never scored.
      if (closing !== undefined) return CLOSING
      if (busy >= config.limits.concurrency) {
        diag.count('hub.busy')
        return refuse(503, 'busy', 'the hub is scoring other batches; retry later', 1)
      }
      busy++
      try {
        return await run(body, signature)
      } catch (err) {
        diag.error('hub_ingest_failed', 'a batch could not be processed', err)
        return refuse(500, 'internal', 'the batch could not be processed')
      } finally {
        busy--
        if (busy === 0) idle?.()
      }
    },
  }
}
