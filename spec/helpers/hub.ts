/**
 * A real Security Hub on 127.0.0.1 (an Express app with `sqreenHub()` mounted,
 * optionally behind helmet), keys for both algorithms, a batch signer for
 * crafting good and bad batches by hand (wire format v2: a JSON body and its
 * detached JWS), a fetch that records what the forwarder sends, and valid
 * sample events.
 */
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import express, { type Express } from 'express'
import helmet from 'helmet'
import { FlattenedSign } from 'jose'
import nodeFetch from 'node-fetch'
import {
  type AuthEvent,
  type FetchLike,
  type HubOptions,
  type RiskAlert,
  type Severity,
  type SqreenHub,
  sqreenHub,
} from '../../lib/index.js'
import type { ForwardConfig } from '../../lib/transport/forwarder.js'
import { signingKey } from '../../lib/transport/keys.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, BATCH_TYP, WIRE_VERSION } from '../../lib/transport/wire.js'
import { MemoryLogger } from './apps.js'

export const HS_SECRET = 'hub-spec-shared-secret-0123456789abcdef-xyz'
export const HUB_TOKEN = 'hub-spec-access-token-0123456789abcdefghij'

/** One Ed25519 key pair for the file that imports this (generated, never committed). */
export const ed25519 = (): { privateKey: KeyObject; publicKey: KeyObject; publicPem: string; privatePem: string } => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}

export interface RunningHub {
  readonly hub: SqreenHub
  readonly app: Express
  readonly logger: MemoryLogger
  readonly alerts: RiskAlert[]
  /** http://127.0.0.1:port */
  readonly origin: string
  /** Where the hub is mounted, e.g. http://127.0.0.1:port/hub */
  readonly base: string
  /** The forwarder's target: base + /v1/events */
  readonly ingestUrl: string
  /** Stops listening (connections refused), keeping the port. */
  down(): Promise<void>
  /** Listens again on the same port. */
  up(): Promise<void>
  close(): Promise<void>
  counter(name: string): number
}

export interface HubSetup {
  readonly mount?: string
  readonly helmet?: boolean
  /** An application-wide body parser mounted before the hub. */
  readonly parser?: 'json' | 'json-any' | 'raw' | 'text'
  /** Express `trust proxy` (to test Secure cookies behind a TLS proxy). */
  readonly trustProxy?: boolean
  /** Keep the hub's default reorder window (otherwise batches are scored before they are answered). */
  readonly reorder?: boolean
}

export const startHub = async (options: Partial<HubOptions> = {}, setup: HubSetup = {}): Promise<RunningHub> => {
  const logger = new MemoryLogger()
  const alerts: RiskAlert[] = []
  const hub = sqreenHub({
    key: HS_SECRET,
    token: HUB_TOKEN,
    logger,
    onAlert: (a) => void alerts.push(a),
    // Specs read scores as soon as a batch is answered: scored before the answer, unless a
    // spec asks for the reorder window (spec/hub.ordering.spec.ts holds the default to account).
    ...(setup.reorder ? {} : { reorderWindow: 0 }),
    ...options,
  })
  const app = express()
  if (setup.trustProxy) app.set('trust proxy', true)
  if (setup.helmet) app.use(helmet())
  if (setup.parser === 'json') app.use(express.json({ limit: '8mb' }))
  if (setup.parser === 'json-any') app.use(express.json({ type: '*/*', limit: '8mb' }))
  if (setup.parser === 'raw') app.use(express.raw({ type: '*/*', limit: '8mb' }))
  if (setup.parser === 'text') app.use(express.text({ type: '*/*', limit: '8mb' }))
  const mount = setup.mount ?? '/hub'
  app.use(mount, hub)
  let server: Server | undefined
  let port = 0
  const up = async (): Promise<void> => {
    server = createServer(app as unknown as (req: IncomingMessage, res: ServerResponse) => void)
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as AddressInfo).port
  }
  const down = async (): Promise<void> => {
    const s = server
    if (!s) return
    server = undefined
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
  await up()
  const origin = `http://127.0.0.1:${port}`
  return {
    hub,
    app,
    logger,
    alerts,
    origin,
    base: `${origin}${mount}`,
    ingestUrl: `${origin}${mount}/v1/events`,
    down,
    up,
    close: async () => {
      await down()
      await hub.close()
    },
    counter: (name) => hub.stats().counters[name] ?? 0,
  }
}

export interface SignOptions {
  readonly key: KeyObject | Uint8Array | string
  readonly alg?: string
  /** `null` leaves `typ` out of the header. */
  readonly typ?: string | null
  /** Protected header parameters set over the forwarder's; `undefined` removes one (`{ b64: undefined }`). */
  readonly header?: Record<string, unknown>
  /** `null` leaves the claim out. */
  readonly iat?: number | null
  readonly exp?: number | null
  readonly jti?: string | null
  readonly extra?: Record<string, unknown>
  readonly dropped?: number
  /** Signs (and sends) these bytes instead of the JSON batch. */
  readonly body?: string | Uint8Array
  /** jose's `crit` sign option, to sign with an extension the hub does not know. */
  readonly crit?: Record<string, boolean>
}

/** A batch as the forwarder POSTs it: the body, and the detached JWS of its `Sqreen-Signature` header. */
export interface SignedBatch {
  readonly body: string | Uint8Array
  readonly signature?: string
}

/**
 * Signs a batch as the forwarder would (FlattenedSign, `b64: false`), with every part
 * overridable for the bad cases. A header without `b64: false` in `crit` makes jose
 * sign base64url(body) instead: the encoded-payload JWS a v2 hub must refuse.
 */
export const signBatch = async (events: readonly unknown[], options: SignOptions): Promise<Required<SignedBatch>> => {
  const now = Math.floor(Date.now() / 1000)
  const key = typeof options.key === 'string' ? new TextEncoder().encode(options.key) : options.key
  const claims: Record<string, unknown> = { v: WIRE_VERSION }
  if (options.iat !== null) claims.iat = options.iat ?? now
  if (options.exp !== null) claims.exp = options.exp ?? now + 60
  if (options.jti !== null) claims.jti = options.jti ?? randomUUID()
  Object.assign(claims, { dropped: options.dropped ?? 0, events }, options.extra)
  const body = options.body ?? JSON.stringify(claims)
  const header: Record<string, unknown> = {
    alg: options.alg ?? 'HS256',
    typ: BATCH_TYP,
    b64: false,
    crit: ['b64'],
    ...options.header,
  }
  if (options.typ === null) delete header.typ
  else if (options.typ !== undefined) header.typ = options.typ
  for (const name of Object.keys(header)) if (header[name] === undefined) delete header[name]
  const jws = await new FlattenedSign(typeof body === 'string' ? new TextEncoder().encode(body) : body)
    .setProtectedHeader(header)
    .sign(key, options.crit === undefined ? undefined : { crit: options.crit })
  return { body, signature: `${jws.protected}..${jws.signature}` }
}

/** A detached JWS with `alg: none` and no signature (jose will not make one). */
export const unsignedBatch = (events: readonly unknown[]): SignedBatch => {
  const now = Math.floor(Date.now() / 1000)
  const header = { alg: 'none', typ: BATCH_TYP, b64: false, crit: ['b64'] }
  return {
    body: JSON.stringify({ v: WIRE_VERSION, iat: now, exp: now + 60, jti: randomUUID(), dropped: 0, events }),
    signature: `${Buffer.from(JSON.stringify(header)).toString('base64url')}..`,
  }
}

/** POSTs a batch to the hub as the forwarder does (no `Sqreen-Signature` header when it has no signature). */
export const postBatch = async (
  url: string,
  batch: SignedBatch,
  contentType = BATCH_CONTENT_TYPE,
): Promise<{ status: number; body: any; headers: Headers }> => {
  const headers: Record<string, string> = { 'content-type': contentType }
  if (batch.signature !== undefined) headers[BATCH_SIGNATURE_HEADER] = batch.signature
  // Bounded, so a hub that never answers fails the test instead of hanging it.
  const res = await fetch(url, { method: 'POST', headers, body: batch.body, signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: res.status, body, headers: res.headers }
}

/** A valid event as the identity boundary produces it (automatic mode). */
export const sampleEvent = (overrides: Record<string, unknown> = {}): AuthEvent =>
  ({
    id: randomUUID(),
    type: 'login.failed',
    at: new Date().toISOString(),
    source: 'passport',
    mode: 'automatic',
    strategy: 'local',
    reason: 'invalid_credentials',
    identity: { login: 'victim' },
    userKey: 'login:victim',
    loginKey: 'login:victim',
    ip: '203.0.113.7',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0',
    status: 401,
    attempts: [{ strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' }],
    ...overrides,
  }) as AuthEvent

/** What the forwarder sent, request by request (read from the real HTTP exchange). */
export interface SentBatch {
  readonly at: number
  readonly url: string
  /** The request body as text (the bytes below, decoded as UTF-8). */
  readonly body: string
  /** The request body's bytes, exactly as sent (and signed). */
  readonly bytes: Uint8Array
  /** The `Sqreen-Signature` header: the detached JWS. */
  readonly signature: string
  /** The parsed (unverified) body, for inspection. */
  readonly claims: { v: number; events: AuthEvent[]; dropped: number; jti: string; iat: number; exp: number }
  /** The decoded (unverified) protected header. */
  readonly header: { alg: string; typ?: string; b64?: boolean; crit?: string[] }
  status?: number
  error?: string
}

/** node-fetch, recording every request the forwarder makes (the injectable `fetch` option). */
export const recordingFetch = (): { fetch: FetchLike; sent: SentBatch[] } => {
  const sent: SentBatch[] = []
  const fetch: FetchLike = async (url, init) => {
    const signature = init.headers[BATCH_SIGNATURE_HEADER] ?? ''
    const bytes = typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : init.body
    const text = Buffer.from(bytes).toString('utf8')
    const entry: SentBatch = {
      at: Date.now(),
      url,
      body: text,
      bytes,
      signature,
      header: JSON.parse(Buffer.from(signature.split('.')[0] ?? '', 'base64url').toString('utf8')),
      claims: JSON.parse(text),
    }
    sent.push(entry)
    try {
      const res = await (nodeFetch as unknown as FetchLike)(url, init)
      entry.status = res.status
      return res
    } catch (err) {
      entry.error = err instanceof Error ? err.name : 'error'
      throw err
    }
  }
  return { fetch, sent }
}

/** An attack the application reported (`trackEvent`, high severity): one ledger entry for `userKey` once scored. */
export const attackOn = (userKey: string, severity: Severity = 'high'): AuthEvent =>
  sampleEvent({
    type: 'custom',
    source: 'sdk',
    strategy: null,
    reason: undefined,
    name: 'sql_injection',
    severity,
    userKey,
    identity: { id: userKey },
    loginKey: undefined,
    attempts: undefined,
    status: undefined,
  })

/**
 * A forwarder's resolved configuration for specs that build one directly (createForwarder):
 * the hub's HS256 secret, small batches and short waits, no signal handlers.
 */
export const forwardConfig = (url: string, overrides: Partial<ForwardConfig> = {}): ForwardConfig => ({
  url,
  key: signingKey(HS_SECRET),
  batchSize: 5,
  flushIntervalMs: 10,
  maxQueued: 100,
  timeoutMs: 2000,
  baseDelayMs: 10,
  maxDelayMs: 50,
  expiresInSeconds: 60,
  closeTimeoutMs: 2000,
  flushOnExit: false,
  ...overrides,
})
