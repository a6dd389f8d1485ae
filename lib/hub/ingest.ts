import { jwtVerify } from 'jose'
import type { Diagnostics } from '../diagnostics.js'
import type { createRiskEngine } from '../risk/engine.js'
import type { HubConfig } from './options.js'
import { RecentIds, ReplayCache } from './replay.js'
import { checkEvent, type SchemaLimits } from './schema.js'
import type { HubViews } from './views.js'

/**
 * The forwarder's wire format (lib/transport/wire.ts holds the sender's copy;
 * stages only import backwards, and spec/hub.ingest.spec.ts checks they agree).
 */
export const BATCH_CONTENT_TYPE = 'application/jwt'
export const BATCH_TYP = 'sqreen-auth-batch+jwt'
export const WIRE_VERSION = 1

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
  /** Verifies a signed batch and scores its valid events. Never throws. */
  ingest(token: string): Promise<IngestResult>
  readonly busy: number
}

const refuse = (status: number, error: string, message: string, retryAfterSeconds?: number): IngestResult =>
  retryAfterSeconds === undefined
    ? { status, body: { error, message } }
    : { status, body: { error, message }, retryAfterSeconds }

/** jose's error codes, read as the sender should understand them (never echoing token content). */
const verificationFailure = (err: unknown): IngestResult => {
  const code = (err as { code?: unknown })?.code
  switch (code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return refuse(401, 'alg_not_allowed', 'the batch is not signed with the algorithm of the hub key')
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return refuse(401, 'bad_signature', 'the batch signature does not verify with the hub key')
    case 'ERR_JWT_EXPIRED':
      return refuse(401, 'expired', 'the batch has expired (exp); check the sender clock')
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = (err as { claim?: unknown }).claim
      const name = typeof claim === 'string' && /^[a-z]{1,8}$/.test(claim) ? claim : 'a claim'
      return refuse(401, 'bad_claim', `the batch claim "${name}" is missing or invalid`)
    }
    case 'ERR_JOSE_NOT_SUPPORTED':
      return refuse(401, 'alg_not_allowed', 'the batch algorithm is not supported')
    default:
      return refuse(400, 'malformed', 'the body is not a signed batch (JWS compact serialisation)')
  }
}

export const createIngest = (config: HubConfig, engine: RiskEngine, views: HubViews, diag: Diagnostics): Ingest => {
  const replays = new ReplayCache(config.limits.replay)
  // Enough to cover a few minutes of batches; a re-sent batch comes back within the sender's backoff.
  const seen = new RecentIds(Math.max(100_000, config.limits.events * 100))
  const schema: SchemaLimits = { futureMs: config.clockToleranceSeconds * 1000 + 60_000, pastMs: MAX_EVENT_AGE_MS }
  const verifyOptions = {
    algorithms: [config.key.alg],
    typ: BATCH_TYP,
    requiredClaims: ['exp', 'iat', 'jti'],
    maxTokenAge: config.maxTokenAgeSeconds + config.clockToleranceSeconds,
    clockTolerance: config.clockToleranceSeconds,
  }
  let busy = 0

  const refused = (result: IngestResult): IngestResult => {
    diag.count('hub.batches_refused')
    diag.warn(
      `hub_batch_refused.${result.body.error}`,
      `a forwarded batch was refused (HTTP ${result.status}): ${result.body.message}`,
    )
    return result
  }

  const run = async (token: string): Promise<IngestResult> => {
    let payload: Record<string, unknown>
    try {
      payload = (await jwtVerify(token, config.key.key, verifyOptions)).payload as Record<string, unknown>
    } catch (err) {
      return refused(verificationFailure(err))
    }
    const { jti, iat, exp, events, dropped, v } = payload
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 128)
      return refused(refuse(401, 'bad_claim', 'the batch claim "jti" must be a string of 1 to 128 characters'))
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp - iat > config.maxTokenAgeSeconds) {
      return refused(
        refuse(401, 'lifetime_too_long', `a batch may live at most ${config.maxTokenAgeSeconds} s (exp - iat)`),
      )
    }
    if (v !== WIRE_VERSION)
      return refused(refuse(400, 'version', `unsupported batch version (expected ${WIRE_VERSION})`))
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
    async ingest(token) {
      if (busy >= config.limits.concurrency) {
        diag.count('hub.busy')
        return refuse(503, 'busy', 'the hub is scoring other batches; retry later', 1)
      }
      busy++
      try {
        return await run(token)
      } catch (err) {
        diag.error('hub_ingest_failed', 'a batch could not be processed', err)
        return refuse(500, 'internal', 'the batch could not be processed')
      } finally {
        busy--
      }
    },
  }
}
