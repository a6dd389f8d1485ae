import type { Request } from 'express'

const MAX_USER_AGENT = 512

/**
 * The client IP is Express's `req.ip`, which honours the application's
 * `trust proxy` setting. Forwarding headers are deliberately not parsed here:
 * trusting them is the application's decision, not ours.
 */
export const clientIp = (req: Request): string | null => {
  const ip = trustsNoProxy(req) ? req.socket?.remoteAddress : (req as { ip?: unknown }).ip
  if (typeof ip === 'string' && ip !== '') return ip
  const fallback = (req as { ip?: unknown }).ip
  return typeof fallback === 'string' && fallback !== '' ? fallback : null
}

/**
 * Whether no proxy is trusted, so that the client is the socket's peer: Express's default
 * (`trust proxy` false), where `req.ip` is the socket's address, which Express still finds
 * by running proxy-addr on every read (parsing X-Forwarded-For into arrays only to discard
 * them; read directly, a login allocates a few hundred bytes less); and a request that is
 * not Express's (the SDK called from a plain `node:http` handler), which has no `req.ip` and
 * no setting to honour.
 */
const trustsNoProxy = (req: Request): boolean => {
  const app = (req as { app?: { get?: unknown } }).app
  if (app === undefined) return (req as { ip?: unknown }).ip === undefined
  return typeof app.get === 'function' && (app.get as (name: string) => unknown).call(app, 'trust proxy') === false
}

export const userAgent = (req: Request): string | null => {
  const ua = req.headers?.['user-agent']
  return typeof ua === 'string' && ua !== '' ? ua.slice(0, MAX_USER_AGENT) : null
}

/** The authenticated user of a request, honouring passport's `userProperty` option. */
export const requestUser = (req: Request): unknown => {
  const property = (req as { _userProperty?: unknown })._userProperty
  const key = typeof property === 'string' && property !== '' ? property : 'user'
  return (req as unknown as Record<string, unknown>)[key]
}
