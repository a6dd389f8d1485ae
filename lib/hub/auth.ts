import { createHash, createHmac, hkdfSync, KeyObject, randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import type { Diagnostics } from '../diagnostics.js'
import type { Store } from '../store/store.js'
import { BATCH_TYP } from './ingest.js'
import type { HubConfig } from './options.js'

/** Who is signed in, and until when. */
export interface Principal {
  /** `'token'` for the bearer token, the JWT's `sub` otherwise. */
  readonly subject: string
  readonly expiresAt: number
}

export const SESSION_COOKIE = 'sqreen_hub'
const MAX_CREDENTIAL = 8192
const MAX_SESSIONS = 1000

/**
 * A JWS `typ` of the batches (version 2's, version 1's `+jwt`, any later one): case aside,
 * and with or without "application/" (RFC 7515 section 4.1.9). A version 1 batch was a JWT
 * with `exp`; signed with a key the JWTs share, a captured one would open the API.
 */
const isBatchTyp = (typ: unknown): boolean => {
  if (typeof typ !== 'string') return false
  const lower = typ.toLowerCase()
  return (lower.startsWith('application/') ? lower.slice('application/'.length) : lower).startsWith(BATCH_TYP)
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/** `Cookie` header -> the value of one cookie (first wins, as browsers send the most specific path first). */
export const readCookie = (header: string | undefined, name: string): string | undefined => {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

export interface HubAuth {
  /** Checks a credential given by a person or a client: the token (constant time) or a JWT. */
  verify(credential: string): Promise<Principal | undefined>
  /** `Authorization: Bearer ...` */
  bearer(req: IncomingMessage): Promise<Principal | undefined>
  /** The session of the request's cookie, if it is live (none while a shared store cannot be reached). */
  session(req: IncomingMessage): Promise<Principal | undefined>
  /** Opens a session; returns the cookie value. Rejects when a shared store cannot be reached. */
  open(principal: Principal): Promise<string>
  /** Ends the request's session (logout). Rejects when a shared store cannot be reached. */
  end(req: IncomingMessage): Promise<void>
}

/** Where sessions are kept: this process, or a store shared by several hubs. */
interface SessionKeeper {
  get(cookie: string | undefined): Promise<Principal | undefined>
  open(principal: Principal): Promise<string>
  end(cookie: string | undefined): Promise<void>
}

const newSessionId = (): string => randomBytes(32).toString('base64url')
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/

/** Sessions in this process: a Map of hashed ids, at most `MAX_SESSIONS` (the oldest go first). */
const localSessions = (): SessionKeeper => {
  const sessions = new Map<string, Principal>()
  const digest = (cookie: string | undefined): string | undefined =>
    cookie !== undefined && SESSION_ID.test(cookie) ? sha256(cookie).toString('hex') : undefined
  return {
    async get(cookie) {
      const id = digest(cookie)
      if (id === undefined) return undefined
      const principal = sessions.get(id)
      if (principal === undefined) return undefined
      if (principal.expiresAt <= Date.now()) {
        sessions.delete(id)
        return undefined
      }
      return principal
    },
    async open(principal) {
      const value = newSessionId()
      sessions.set(sha256(value).toString('hex'), principal)
      if (sessions.size > MAX_SESSIONS) {
        const oldest = sessions.keys().next().value
        if (oldest !== undefined) sessions.delete(oldest)
      }
      return value
    },
    async end(cookie) {
      const id = digest(cookie)
      if (id !== undefined) sessions.delete(id)
    },
  }
}

/**
 * A cookie for a shared store: `<id>.<expiresAt>.<subject>` (epoch ms in base 10, the
 * subject as base64url of its UTF-8). The store holds a mark only, so the cookie carries
 * what the page shows, and the mark's name commits to it: a cookie whose subject or
 * expiry was edited names a mark that was never set.
 */
const SHARED_COOKIE = /^([A-Za-z0-9_-]{43})\.([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{0,700})$/

/**
 * The key that names a session in the store: an HMAC, keyed by the hub's own secrets (see
 * `sessionSecret`), so writing to the store is not enough to make a session (applications
 * may share the Redis server with the hub), and the id is never in the store as it is (a
 * dump gives no usable cookie). The field commits to the id, the expiry and the subject.
 * Store keys name owners (users `id:…`, `login:…`, IPs `ip:…`); `hub:` is the hub's own, as
 * for replay marks (lib/hub/ingest.ts), and the field is one the engine never writes, so a
 * forwarded event can neither create nor end a session.
 */
export const sessionNames = (secret: Buffer, id: string, expiresAt: number, subject: string) => {
  const mac = (text: string): string => createHmac('sha256', secret).update(text, 'utf8').digest('base64url')
  return {
    key: `hub:session:${mac(`id\n${id}`)}`,
    field: `hub:session:${mac(`mark\n${id}\n${expiresAt}\n${subject}`)}`,
  }
}

/**
 * What keys the names of shared sessions: the hub's token, an HS256 `jwt.key` and its
 * `secret`, whichever are set (none of which a forwarder holds). Hubs that share a store
 * share sessions only when they share these, and changing any of them ends every session.
 * `undefined` when the hub has none of them (only a JWT public key): its sessions then stay
 * in its process.
 */
export const sessionSecret = (config: Pick<HubConfig, 'token' | 'jwt' | 'secret'>): Buffer | undefined => {
  const parts: Buffer[] = []
  if (config.token !== undefined) parts.push(sha256(`token\n${config.token}`))
  const jwtKey = config.jwt?.key
  if (jwtKey?.alg === 'HS256') {
    const bytes = jwtKey.key instanceof KeyObject ? jwtKey.key.export() : Buffer.from(jwtKey.key)
    parts.push(createHash('sha256').update('jwt\n').update(bytes).digest())
  }
  if (config.secret !== undefined) parts.push(createHash('sha256').update('secret\n').update(config.secret).digest())
  if (parts.length === 0) return undefined
  return Buffer.from(hkdfSync('sha256', Buffer.concat(parts), Buffer.alloc(0), 'sqreen-auth hub sessions', 32))
}

/**
 * Sessions in a store that several hubs share (a `RedisStore`): a session opened on one
 * hub is good on every hub of the store with the same secrets and survives restarts, and
 * logout ends it on all of them. While the store cannot be reached nobody is signed in
 * (access control fails closed); the outage is logged once.
 */
const sharedSessions = (store: Store, secret: Buffer, diag: Diagnostics): SessionKeeper => {
  let failing = false
  const ran = async <T>(ops: Parameters<Store['run']>[0]): Promise<T> => {
    try {
      const results = await store.run(ops, Date.now())
      if (failing) {
        failing = false
        diag.rearm('hub_session_store_failed')
      }
      return results[0] as T
    } catch (err) {
      failing = true
      diag.count('store_errors')
      diag.error(
        'hub_session_store_failed',
        'the shared store could not be reached for a dashboard session; nobody can sign in until it is back',
        err,
      )
      throw err
    }
  }
  const parse = (cookie: string | undefined) => {
    const match = cookie === undefined ? null : SHARED_COOKIE.exec(cookie)
    if (match === null) return undefined
    const id = match[1] as string
    const expiresAt = Number(match[2])
    const encoded = match[3] as string
    const subject = Buffer.from(encoded, 'base64url').toString('utf8')
    // One spelling per session: base64url ignores spare trailing bits, UTF-8 decoding replaces bad bytes.
    if (Buffer.from(subject, 'utf8').toString('base64url') !== encoded) return undefined
    return { ...sessionNames(secret, id, expiresAt, subject), expiresAt, subject }
  }
  return {
    async get(cookie) {
      const session = parse(cookie)
      if (session === undefined || session.expiresAt <= Date.now()) return undefined
      try {
        const live = await ran<boolean>([{ op: 'marked', key: session.key, field: session.field }])
        return live ? { subject: session.subject, expiresAt: session.expiresAt } : undefined
      } catch {
        return undefined
      }
    },
    async open({ subject: given, expiresAt }) {
      // As the cookie will give it back: UTF-8 turns a lone surrogate into U+FFFD.
      const subject = Buffer.from(given, 'utf8').toString('utf8')
      const id = newSessionId()
      const ttl = Math.max(1, expiresAt - Date.now())
      const { key, field } = sessionNames(secret, id, expiresAt, subject)
      await ran([{ op: 'claim', key, field, ttl }])
      return `${id}.${expiresAt}.${Buffer.from(subject, 'utf8').toString('base64url')}`
    },
    async end(cookie) {
      const session = parse(cookie)
      if (session !== undefined) await ran([{ op: 'reset', key: session.key, field: session.field }])
    },
  }
}

/**
 * Access control for the API and the dashboard. The token is compared as
 * SHA-256 digests with `timingSafeEqual` (equal lengths, constant time); JWTs
 * are verified with jose, pinned to the configured key's algorithm, `exp`
 * required, and never with a batch's `typ`. A browser exchanges either for a
 * session: a random id in an HttpOnly, SameSite=Strict cookie, kept server-side
 * (hashed) so logout really ends it: in this process (a restart signs everyone
 * out), or in the store several hubs share (`shared`: one sign-in for all of them, when
 * the hub has a secret of its own to name sessions by, see `sessionSecret`).
 */
/** The shortest wait between two fetches of an identity provider's key set. */
export const JWKS_COOLDOWN_MS = 5_000

export const createAuth = (config: HubConfig, shared: Store | undefined, diag: Diagnostics): HubAuth => {
  const tokenDigest = config.token === undefined ? undefined : sha256(config.token)
  const secret = shared === undefined ? undefined : sessionSecret(config)
  const sessions = shared === undefined || secret === undefined ? localSessions() : sharedSessions(shared, secret, diag)
  const jwt = config.jwt
  // A fixed key, or the identity provider's key set: fetched by jose on first use, cached,
  // and fetched again (at most every JWKS_COOLDOWN_MS, so tokens naming unknown keys cannot
  // make the hub flood the provider) for a `kid` it does not hold: a rotation at the
  // provider needs nothing here. A fetch that fails refuses the JWT (no sign-in, no data).
  const jwtKey =
    jwt?.key?.key ??
    (jwt?.jwksUrl === undefined
      ? undefined
      : createRemoteJWKSet(jwt.jwksUrl, { cooldownDuration: JWKS_COOLDOWN_MS, timeoutDuration: 5_000 }))
  const jwtOptions = jwt
    ? {
        algorithms: [...jwt.algorithms],
        requiredClaims: ['exp'],
        clockTolerance: config.clockToleranceSeconds,
        ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer }),
        ...(jwt.audience === undefined ? {} : { audience: jwt.audience }),
      }
    : undefined

  const cookieOf = (req: IncomingMessage): string | undefined => readCookie(req.headers.cookie, SESSION_COOKIE)

  const verify = async (credential: string): Promise<Principal | undefined> => {
    if (credential.length === 0 || credential.length > MAX_CREDENTIAL) return undefined
    if (tokenDigest !== undefined && timingSafeEqual(sha256(credential), tokenDigest)) {
      return { subject: 'token', expiresAt: Number.POSITIVE_INFINITY }
    }
    if (jwtKey !== undefined && jwtOptions && credential.split('.').length === 3) {
      try {
        const { payload, protectedHeader } =
          typeof jwtKey === 'function'
            ? await jwtVerify(credential, jwtKey, jwtOptions)
            : await jwtVerify(credential, jwtKey, jwtOptions)
        // A signed batch is never a credential, whatever key signed it (setup refuses a shared one).
        if (isBatchTyp(protectedHeader.typ)) return undefined
        const subject = typeof payload.sub === 'string' ? payload.sub.slice(0, 128) : 'jwt'
        return { subject, expiresAt: (payload.exp as number) * 1000 }
      } catch {
        return undefined
      }
    }
    return undefined
  }

  return {
    verify,
    async bearer(req) {
      const header = req.headers.authorization
      const match = typeof header === 'string' ? /^Bearer +(\S+)$/i.exec(header) : null
      return match ? verify(match[1] as string) : undefined
    },
    session: (req) => sessions.get(cookieOf(req)),
    open: (principal) =>
      sessions.open({
        subject: principal.subject,
        // Whole milliseconds: the shared cookie writes the expiry as an integer.
        expiresAt: Math.floor(Math.min(principal.expiresAt, Date.now() + config.sessionTtlMs)),
      }),
    end: (req) => sessions.end(cookieOf(req)),
  }
}
