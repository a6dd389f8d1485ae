/**
 * A real Security Hub on 127.0.0.1 (an Express app with `sqreenHub()` mounted,
 * optionally behind helmet), keys for both algorithms, a batch signer for
 * crafting good and bad batches by hand, a fetch that records what the
 * forwarder sends, and valid sample events.
 */
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import express, { type Express } from 'express'
import helmet from 'helmet'
import { type JWTHeaderParameters, SignJWT } from 'jose'
import nodeFetch from 'node-fetch'
import {
  type AuthEvent,
  type FetchLike,
  type HubOptions,
  type RiskAlert,
  type SqreenHub,
  sqreenHub,
} from '../../lib/index.js'
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
  /** Express `trust proxy` (to test Secure cookies behind a TLS proxy). */
  readonly trustProxy?: boolean
}

export const startHub = async (options: Partial<HubOptions> = {}, setup: HubSetup = {}): Promise<RunningHub> => {
  const logger = new MemoryLogger()
  const alerts: RiskAlert[] = []
  const hub = sqreenHub({
    key: HS_SECRET,
    token: HUB_TOKEN,
    logger,
    onAlert: (a) => void alerts.push(a),
    ...options,
  })
  const app = express()
  if (setup.trustProxy) app.set('trust proxy', true)
  if (setup.helmet) app.use(helmet())
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
  readonly typ?: string | null
  readonly iat?: number
  readonly exp?: number | null
  readonly jti?: string | null
  readonly extra?: Record<string, unknown>
  readonly dropped?: number
}

/** Signs a batch as the forwarder would, with every part overridable (for the bad cases). */
export const signBatch = async (events: readonly unknown[], options: SignOptions): Promise<string> => {
  const now = Math.floor(Date.now() / 1000)
  const key = typeof options.key === 'string' ? new TextEncoder().encode(options.key) : options.key
  const header: JWTHeaderParameters = { alg: options.alg ?? 'HS256' }
  if (options.typ !== null) header.typ = options.typ ?? 'sqreen-auth-batch+jwt'
  let jwt = new SignJWT({ v: 1, dropped: options.dropped ?? 0, events: events as [], ...options.extra })
    .setProtectedHeader(header)
    .setIssuedAt(options.iat ?? now)
  if (options.exp !== null) jwt = jwt.setExpirationTime(options.exp ?? now + 60)
  if (options.jti !== null) jwt = jwt.setJti(options.jti ?? randomUUID())
  return jwt.sign(key)
}

/** POSTs a token to the hub as the forwarder does. */
export const postBatch = async (
  url: string,
  token: string,
  contentType = 'application/jwt',
): Promise<{ status: number; body: any; headers: Headers }> => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: token })
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
  readonly token: string
  /** The decoded (unverified) claims, for inspection. */
  readonly claims: { events: AuthEvent[]; dropped: number; jti: string; iat: number; exp: number }
  readonly header: { alg: string; typ?: string }
  status?: number
  error?: string
}

const decode = (part: string): any => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))

/** node-fetch, recording every request the forwarder makes (the injectable `fetch` option). */
export const recordingFetch = (): { fetch: FetchLike; sent: SentBatch[] } => {
  const sent: SentBatch[] = []
  const fetch: FetchLike = async (url, init) => {
    const [header, claims] = init.body.split('.')
    const entry: SentBatch = {
      at: Date.now(),
      url,
      token: init.body,
      header: decode(header ?? ''),
      claims: decode(claims ?? ''),
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
