import { createHmac } from 'node:crypto'
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

export interface IpFacts {
  /** The address (IPv4) or /56 prefix (IPv6) that IP-level state is counted under. */
  readonly prefix: string
  /** The store key of that state: `ip:<prefix>`. */
  readonly key: string
  /** Shown in alerts and evidence: /24 or /56. */
  readonly display: string | undefined
}

/**
 * The index of the last dot when `ip` is a dotted-quad IPv4 address as `isIPv4`
 * accepts it (four decimal parts of 0-255, no leading zeros), else -1. Logins
 * come from about as many addresses as there are users, so this runs on nearly
 * every event: a scan of at most 15 characters, where the regular expression
 * and a cache of parsed addresses each cost more than the rest of the event's IP
 * handling.
 */
const v4LastDot = (ip: string): number => {
  const n = ip.length
  if (n < 7 || n > 15) return -1
  let parts = 0
  let digits = 0
  let value = 0
  let lastDot = -1
  for (let i = 0; i <= n; i++) {
    const c = i === n ? 46 : ip.charCodeAt(i)
    if (c === 46) {
      if (digits === 0 || value > 255) return -1
      parts++
      if (i < n) lastDot = i
      digits = 0
      value = 0
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return -1 // a leading zero
      value = value * 10 + (c - 48)
      if (++digits > 3) return -1
    } else return -1
  }
  return parts === 4 ? lastDot : -1
}

/**
 * What alerts show of IPv4 clients, one string per /24 in use: ledger entries
 * keep it as evidence, and an attack from one network reaches many users, whose
 * entries then share one string instead of holding two objects each (the slice
 * and the concatenation) that the collector copies with every new entry.
 */
const displays = new Map<string, string>()
const DISPLAYS_MAX = 4_096

/** How many display strings are cached (for tests: the cache stays within its bound). */
export const displayCacheSize = (): number => displays.size

/** An IPv4 client's facts; what alerts show is built only when an alert or evidence asks. */
class V4Facts implements IpFacts {
  readonly key: string
  constructor(
    readonly prefix: string,
    readonly lastDot: number,
  ) {
    this.key = `ip:${prefix}`
  }
  get display(): string {
    const network = this.prefix.slice(0, this.lastDot)
    let shown = displays.get(network)
    if (shown === undefined) {
      shown = `${network}.0/24`
      if (displays.size >= DISPLAYS_MAX) displays.clear()
      displays.set(network, shown)
    }
    return shown
  }
}

// IPv6 prefixes take some parsing and are rarer: a bounded cache of them.
const cache = new Map<string, IpFacts | undefined>()
const CACHE_MAX = 10_000

/** Everything the engine needs to know about a client IP; `undefined` for none or an unparsable one. */
export const ipFacts = (ip: string | null): IpFacts | undefined => {
  if (ip === null) return undefined
  const dot = v4LastDot(ip)
  if (dot !== -1) return new V4Facts(ip, dot)
  const addr = unmapV4(ip)
  const mappedDot = addr === ip ? -1 : v4LastDot(addr)
  if (mappedDot !== -1) return new V4Facts(addr, mappedDot)
  let facts = cache.get(ip)
  if (facts === undefined && !cache.has(ip)) {
    const prefix = isIPv6(addr) ? v6Prefix(addr, 56) : undefined
    facts = prefix === undefined ? undefined : { prefix, key: `ip:${prefix}`, display: prefix }
    if (cache.size >= CACHE_MAX) cache.clear()
    cache.set(ip, facts)
  }
  return facts
}

/** The prefix IP-level state is kept under (see `ipFacts`). */
export const ipKey = (ip: string | null): string | undefined => ipFacts(ip)?.prefix

/** How IPs appear in alerts: truncated to /24 (IPv4) or /56 (IPv6). */
export const displayIp = (ip: string | null): string | undefined => (ip === null ? undefined : ipFacts(ip)?.display)

/**
 * Where IP-level state is kept for one client: the store key of the IP's own state and
 * the member that stands for the IP in a user's failure windows.
 */
export interface IpRef {
  readonly key: string
  readonly member: string
}

/** The default: the address (IPv4) or /56 prefix (IPv6) itself. */
export const plainIpRef = (facts: IpFacts): IpRef => ({ key: facts.key, member: facts.prefix })

/**
 * Advanced mode: the address is replaced by an HMAC-SHA256 (with the `secret`) of it,
 * in the store key and as the window member. IPv4 has only 2^32 addresses, so an
 * unkeyed hash (the 30-bit member hash included) could be reversed by trying them all;
 * keyed, it is as opaque as a login key. Counting per address still works: the same
 * address always gives the same key. An attack comes from few addresses, so the last
 * few thousand are kept (an HMAC costs about as much as the rest of an event's IP work).
 */
export const keyedIpRef = (secret: Buffer): ((facts: IpFacts) => IpRef) => {
  // A key of its own, derived from the secret: with the secret itself, the key of an
  // address would be the login key of a login typed as that address, which anyone who sees
  // login keys (events, the hub) could then test guesses against.
  const ipSecret = createHmac('sha256', secret).update('sqreen-auth ip key v1').digest()
  const refs = new Map<string, IpRef>()
  return (facts) => {
    let ref = refs.get(facts.prefix)
    if (ref === undefined) {
      const pseudonym = createHmac('sha256', ipSecret).update(facts.prefix).digest('base64url').slice(0, 22)
      ref = { key: `ip:~${pseudonym}`, member: pseudonym }
      if (refs.size >= 4_096) refs.clear()
      refs.set(facts.prefix, ref)
    }
    return ref
  }
}
