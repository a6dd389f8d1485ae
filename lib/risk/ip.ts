import { isIPv4, isIPv6 } from 'node:net'

const expandV6 = (ip: string): number[] | undefined => {
  const zone = ip.indexOf('%')
  const bare = zone === -1 ? ip : ip.slice(0, zone)
  const [head = '', tail] = bare.split('::')
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => Number.parseInt(h, 16)))
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  const groups = tail === undefined ? left : [...left, ...new Array(8 - left.length - right.length).fill(0), ...right]
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

/** `::ffff:1.2.3.4` is an IPv4 client seen through a dual-stack socket. */
const unmapV4 = (ip: string): string =>
  ip.length > 7 && ip.slice(0, 7).toLowerCase() === '::ffff:' && isIPv4(ip.slice(7)) ? ip.slice(7) : ip

const v6Prefix = (ip: string, bits: 56 | 64): string | undefined => {
  const groups = expandV6(ip)
  if (!groups) return undefined
  const full = bits === 56 ? 3 : 4
  const parts = groups.slice(0, full).map((g) => g.toString(16))
  if (bits === 56) parts.push(((groups[3] as number) & 0xff00).toString(16))
  return `${parts.join(':')}::/${bits}`
}

/**
 * The prefix IP-level state is kept under: the address for IPv4, the /56 prefix
 * for IPv6 (one customer's allocation, which an attacker rotates within freely).
 */
const prefixOf = (ip: string): string | undefined => {
  const addr = unmapV4(ip)
  if (isIPv4(addr)) return addr
  return isIPv6(addr) ? v6Prefix(addr, 56) : undefined
}

/** How IPs appear in alerts: truncated to /24 (IPv4) or /56 (IPv6). */
const truncate = (ip: string): string | undefined => {
  const addr = unmapV4(ip)
  if (isIPv4(addr)) return `${addr.split('.').slice(0, 3).join('.')}.0/24`
  return isIPv6(addr) ? v6Prefix(addr, 56) : undefined
}

export interface IpFacts {
  /** The address (IPv4) or /56 prefix (IPv6) that IP-level state is counted under. */
  readonly prefix: string
  /** The store key of that state: `ip:<prefix>`. */
  readonly key: string
  /** Shown in alerts and evidence: /24 or /56. */
  readonly display: string | undefined
}

/**
 * A concatenation is a two-part string until first hashed, and hashing it (as a
 * store key) then keeps both parts alive beside the flat copy: property keys are
 * always flat (interned), so this returns one flat string for a key kept long.
 */
const flat = (s: string): string => Object.keys({ [s]: 0 })[0] ?? s

// Logins come from far fewer addresses than they are many: a bounded cache spares
// the parsing on every event and lets ledger entries share one string per prefix.
const cache = new Map<string, IpFacts | undefined>()
const CACHE_MAX = 10_000

/** Everything the engine needs to know about a client IP; `undefined` for none or an unparsable one. */
export const ipFacts = (ip: string | null): IpFacts | undefined => {
  if (ip === null) return undefined
  let facts = cache.get(ip)
  if (facts === undefined && !cache.has(ip)) {
    const prefix = prefixOf(ip)
    facts = prefix === undefined ? undefined : { prefix, key: flat(`ip:${prefix}`), display: truncate(ip) }
    if (cache.size >= CACHE_MAX) cache.clear()
    cache.set(ip, facts)
  }
  return facts
}

/** The prefix IP-level state is kept under (see `ipFacts`). */
export const ipKey = (ip: string | null): string | undefined => ipFacts(ip)?.prefix

/** How IPs appear in alerts: truncated to /24 (IPv4) or /56 (IPv6). */
export const displayIp = (ip: string | null): string | undefined => {
  if (ip === null) return undefined
  const facts = ipFacts(ip)
  // An address the prefix parser refuses may still be shown (never in practice: same parser).
  return facts === undefined ? truncate(ip) : facts.display
}
