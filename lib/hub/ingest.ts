import { Buffer, isUtf8 } from 'node:buffer'
import { decodeProtectedHeader, flattenedVerify } from 'jose'
import type { Diagnostics } from '../diagnostics.js'
import type { createRiskEngine } from '../risk/engine.js'
import type { VerificationKey } from './keys.js'
import type { HubConfig } from './options.js'
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
  /** Verifies a signed batch (the raw body and its detached JWS) and scores its valid events. Never throws. */
  ingest(body: Uint8Array, signature: string | undefined): Promise<IngestResult>
  readonly busy: number
}

const refuse = (status: number, error: string, message: string, retryAfterSeconds?: number): IngestResult =>
  retryAfterSeconds === undefined
    ? { status, body: { error, message } }
    : { status, body: { error, message }, retryAfterSeconds }

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
  | { readonly ok: true; readonly batch: VerifiedBatch }
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
 * Verifies a batch as the wire format defines it: the signature first (jose, the key's
 * one algorithm, an unencoded payload only), then the header's `typ`, then the body is
 * parsed once and the claims that `jwtVerify` checked for version 1 are checked here,
 * with the same answers. Exported so that bench/hub.ts measures exactly this path.
 */
export const createBatchVerifier = (key: VerificationKey, limits: VerifyLimits): BatchVerifier => {
  // `crit: { b64: true }`: b64 is understood, and only when integrity protected. jose
  // verifies the body bytes as they are only when the protected header has `b64: false`
  // and lists b64 in `crit`; otherwise it wants a base64url string as the payload and
  // refuses the bytes, so an encoded-payload JWS can never verify here (no downgrade).
  const options = { algorithms: [key.alg], crit: { b64: true } }
  const tolerance = limits.clockToleranceSeconds
  const maxAge = limits.maxTokenAgeSeconds
  return async (body, signature, nowMs = Date.now()) => {
    const refused = (refusal: IngestResult): Verification => ({ ok: false, refusal })
    // `<protected>..<signature>`: the empty middle is where an attached payload would be.
    const parts = signature?.split('.')
    if (parts?.length !== 3 || parts[1] !== '') return refused(NOT_DETACHED)
    const encodedHeader = parts[0] as string
    let typ: unknown
    try {
      const verified = await flattenedVerify(
        { protected: encodedHeader, signature: parts[2] as string, payload: body },
        key.key,
        options,
      )
      typ = verified.protectedHeader?.typ
    } catch (err) {
      return refused(verificationFailure(err, encodedHeader))
    }
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
    return { ok: true, batch: { jti, iat, exp, events, dropped } }
  }
}

export const createIngest = (config: HubConfig, engine: RiskEngine, views: HubViews, diag: Diagnostics): Ingest => {
  const replays = new ReplayCache(config.limits.replay)
  // Enough to cover a few minutes of batches; a re-sent batch comes back within the sender's backoff.
  const seen = new RecentIds(Math.max(100_000, config.limits.events * 100))
  const schema: SchemaLimits = { futureMs: config.clockToleranceSeconds * 1000 + 60_000, pastMs: MAX_EVENT_AGE_MS }
  const verify = createBatchVerifier(config.key, config)
  let busy = 0

  const refused = (result: IngestResult): IngestResult => {
    diag.count('hub.batches_refused')
    diag.warn(
      `hub_batch_refused.${result.body.error}`,
      `a forwarded batch was refused (HTTP ${result.status}): ${result.body.message}`,
    )
    return result
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
    const nowMs = Date.now()
    const claim = replays.claim(jti, (exp + config.clockToleranceSeconds) * 1000, nowMs)
    if (claim === 'replayed') return refused(refuse(409, 'replayed', 'this batch (jti) was already received'))
    if (claim === 'full') {
      diag.count('hub.busy')
      return refuse(503, 'busy', 'too many batches within their lifetime; retry later', 1)
    }
    diag.count('hub.batches')
    diag.count('hub.events_in', events.length)
    if (typeof dropped === 'number' && Number.isInteger(dropped) && dropped > 0) {
      diag.count('hub.dropped_upstream', dropped)
    }

    const now = config.clock()
    const rejected: Rejection[] = []
    let accepted = 0
    let duplicates = 0
    for (let index = 0; index < events.length; index++) {
      const checked = checkEvent(events[index], now, schema)
      if (!checked.ok) {
        rejected.push({ index, reason: checked.reason })
        continue
      }
      const { event } = checked
      if (!seen.add(event.id)) {
        duplicates++
        continue
      }
      accepted++
      views.record(event)
      // Sequential: one user's events are scored in order. The memory store answers
      // synchronously (no promise); a remote store is awaited event by event.
      const pending = engine.process(event)
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
    async ingest(body, signature) {
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
      }
    },
  }
}
