import type { Request } from 'express'

const MAX_USER_AGENT = 512

/**
 * The client IP is Express's `req.ip`, which honours the application's
 * `trust proxy` setting. Forwarding headers are deliberately not parsed here:
 * trusting them is the application's decision, not ours.
 */
export const clientIp = (req: Request): string | null => {
  const ip = (req as { ip?: unknown }).ip
  return typeof ip === 'string' && ip !== '' ? ip : null
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
