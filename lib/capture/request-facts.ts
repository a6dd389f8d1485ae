import { isIP } from 'node:net'
import type { Request } from 'express'

const MAX_USER_AGENT = 512

/**
 * The client IP is Express's `req.ip`, which honours the application's
 * `trust proxy` setting. Forwarding headers are deliberately not parsed here:
 * trusting them is the application's decision, not ours.
 */
export const clientIp = (req: Request): string | null => {
  // The socket's address is always one; what `req.ip` reads from a trusted X-Forwarded-For is
  // whatever the client put there (see `address`).
  if (trustsNoProxy(req)) {
    const ip = req.socket?.remoteAddress
    if (typeof ip === 'string' && ip !== '') return ip
  }
  return address((req as { ip?: unknown }).ip)
}

/**
 * An IP address, or `null`. With `trust proxy` set, `req.ip` is the X-Forwarded-For entry
 * the proxies did not add, and the client can write anything there: "garbage" was recorded,
 * and the hub refused every such event (its schema wants an address), so an attacker who
 * sent it kept all their failures away from it. An address with a port (`203.0.113.7:51234`,
 * `[2001:db8::1]:443`, as some load balancers write it), or in brackets, is the address.
 */
const address = (ip: unknown): string | null => {
  if (typeof ip !== 'string' || ip === '') return null
  // An IPv6 zone (`fe80::1%eth0`) names an interface of the machine that wrote it, nothing of
  // the client's, and can be any length (the hub refused a 40-character one, and the event).
  const zone = ip.indexOf('%')
  const plain = zone === -1 ? ip : ip.slice(0, zone)
  if (isIP(plain) !== 0) return plain
  const port = /^(?:\[([0-9A-Fa-f:.]+)(?:%[^\]]*)?\](?::\d{1,5})?|(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5})$/.exec(ip)
  const bare = port?.[1] ?? port?.[2]
  return bare !== undefined && isIP(bare) !== 0 ? bare : null
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
