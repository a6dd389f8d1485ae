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
 * Whether the app trusts no proxy (Express's default, `trust proxy` false): `req.ip`
 * is then the socket's address, which Express still finds by running proxy-addr on
 * every read (parsing X-Forwarded-For into arrays only to discard them). Read
 * directly, a login allocates a few hundred bytes less.
 */
const trustsNoProxy = (req: Request): boolean => {
  const app = (req as { app?: { get?: unknown } }).app
  return (
    app !== undefined &&
    typeof app.get === 'function' &&
    (app.get as (name: string) => unknown).call(app, 'trust proxy') === false
  )
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
