import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { jwtVerify } from 'jose'
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
  /** The session of the request's cookie, if it is live. */
  session(req: IncomingMessage): Principal | undefined
  /** Opens a session; returns the cookie value. */
  open(principal: Principal): string
  /** Ends the request's session (logout). */
  end(req: IncomingMessage): void
}

/**
 * Access control for the API and the dashboard. The token is compared as
 * SHA-256 digests with `timingSafeEqual` (equal lengths, constant time); JWTs
 * are verified with jose, pinned to the configured key's algorithm, `exp`
 * required, and never with a batch's `typ`. A browser exchanges either for a
 * session: a random id in an HttpOnly, SameSite=Strict cookie, kept server-side
 * (hashed) so logout really ends it. Sessions live in this process: a restart
 * signs everyone out.
 */
export const createAuth = (config: HubConfig): HubAuth => {
  const tokenDigest = config.token === undefined ? undefined : sha256(config.token)
  const sessions = new Map<string, Principal>()
  const jwt = config.jwt
  const jwtOptions = jwt
    ? {
        algorithms: [jwt.key.alg],
        requiredClaims: ['exp'],
        clockTolerance: config.clockToleranceSeconds,
        ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer }),
        ...(jwt.audience === undefined ? {} : { audience: jwt.audience }),
      }
    : undefined

  const sessionId = (req: IncomingMessage): string | undefined => {
    const value = readCookie(req.headers.cookie, SESSION_COOKIE)
    return value && /^[A-Za-z0-9_-]{43}$/.test(value) ? sha256(value).toString('hex') : undefined
  }

  const verify = async (credential: string): Promise<Principal | undefined> => {
    if (credential.length === 0 || credential.length > MAX_CREDENTIAL) return undefined
    if (tokenDigest !== undefined && timingSafeEqual(sha256(credential), tokenDigest)) {
      return { subject: 'token', expiresAt: Number.POSITIVE_INFINITY }
    }
    if (jwt && jwtOptions && credential.split('.').length === 3) {
      try {
        const { payload, protectedHeader } = await jwtVerify(credential, jwt.key.key, jwtOptions)
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
    session(req) {
      const id = sessionId(req)
      if (id === undefined) return undefined
      const principal = sessions.get(id)
      if (principal === undefined) return undefined
      if (principal.expiresAt <= Date.now()) {
        sessions.delete(id)
        return undefined
      }
      return principal
    },
    open(principal) {
      const value = randomBytes(32).toString('base64url')
      const expiresAt = Math.min(principal.expiresAt, Date.now() + config.sessionTtlMs)
      sessions.set(sha256(value).toString('hex'), { subject: principal.subject, expiresAt })
      if (sessions.size > MAX_SESSIONS) {
        const oldest = sessions.keys().next().value
        if (oldest !== undefined) sessions.delete(oldest)
      }
      return value
    },
    end(req) {
      const id = sessionId(req)
      if (id !== undefined) sessions.delete(id)
    },
  }
}
