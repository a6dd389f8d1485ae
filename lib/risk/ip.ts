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
  ip.toLowerCase().startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip

const v6Prefix = (ip: string, bits: 56 | 64): string | undefined => {
  const groups = expandV6(ip)
  if (!groups) return undefined
  const full = bits === 56 ? 3 : 4
  const parts = groups.slice(0, full).map((g) => g.toString(16))
  if (bits === 56) parts.push(((groups[3] as number) & 0xff00).toString(16))
  return `${parts.join(':')}::/${bits}`
}

/**
 * The key IP-level state is kept under: the address for IPv4, the /56 prefix
 * for IPv6 (one customer's allocation, which an attacker rotates within freely).
 */
export const ipKey = (ip: string | null): string | undefined => {
  if (ip === null) return undefined
  const addr = unmapV4(ip)
  if (isIPv4(addr)) return addr
  return isIPv6(addr) ? v6Prefix(addr, 56) : undefined
}

// Logins come from far fewer addresses than they are many; a bounded cache spares
// the parsing and lets ledger entries share one string per prefix.
const shown = new Map<string, string | undefined>()

/** How IPs appear in alerts: truncated to /24 (IPv4) or /56 (IPv6). */
export const displayIp = (ip: string | null): string | undefined => {
  if (ip === null) return undefined
  if (shown.has(ip)) return shown.get(ip)
  const display = truncate(ip)
  if (shown.size >= 10_000) shown.clear()
  shown.set(ip, display)
  return display
}

const truncate = (ip: string): string | undefined => {
  const addr = unmapV4(ip)
  if (isIPv4(addr)) return `${addr.split('.').slice(0, 3).join('.')}.0/24`
  return isIPv6(addr) ? v6Prefix(addr, 56) : undefined
}
