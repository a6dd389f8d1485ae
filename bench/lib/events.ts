/**
 * The event streams the engine benchmarks score (bench/engine.ts, bench/redis.ts),
 * deterministic so runs compare. Two mixes, because an engine's cost depends on
 * how much of its traffic is an attack:
 *
 * - `everydayMix`: ordinary traffic. Each user signs in from a home address with
 *   one usual browser; 80% successes, 15% typos from home, 3% failures from a
 *   small set of scanning addresses, 2% attacks reported by the app. A few users
 *   alert.
 * - `attackMix`: a credential-stuffing storm. 60% wrong passwords, 30% successes,
 *   10% attacks reported by the app, all from 5,000 shared addresses that every
 *   one of the users is tried from: every address is soon a flagged stuffing
 *   source and nearly every user alerts (one alert per six events or so).
 *
 * In both, one event per millisecond from `t0`, and the event kinds are mixed
 * within each user's own events (a hash of the event's index, not its residue,
 * picks the kind). `start` gives the stream from its event `start` on (at
 * `t0 + start`), so a long stream can be made in pieces that are the same events.
 */
import { randomUUID } from 'node:crypto'
import type { AuthEvent } from '../../lib/event.js'

const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0',
  'curl/8.5.0',
]

/** One advanced-mode event of user `user` from `ip` at epoch ms `at`; `i` picks the user agent. */
export const benchEvent = (i: number, type: AuthEvent['type'], user: number, ip: string, at: number): AuthEvent => ({
  id: randomUUID(),
  type,
  at: new Date(at).toISOString(),
  source: 'passport',
  mode: 'advanced',
  strategy: 'local',
  identity: { id: user },
  userKey: `id:${user}`,
  loginKey: `login:${user.toString(36)}`,
  ip,
  userAgent: UAS[i % UAS.length] as string,
  ...(type === 'login.failed' ? { reason: 'invalid_credentials' as const } : {}),
  ...(type === 'custom' ? { name: 'sql_injection', severity: 'medium' as const } : {}),
})

/** A well-mixed 32-bit hash of an index (the finaliser of MurmurHash3). */
const mix = (i: number): number => {
  let h = Math.imul(i ^ (i >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export const attackMix = (count: number, users: number, t0: number, start = 0): AuthEvent[] => {
  const events: AuthEvent[] = []
  for (let i = start; i < start + count; i++) {
    const r = mix(i) % 100
    const type = r < 60 ? 'login.failed' : r < 90 ? 'login.succeeded' : 'custom'
    const user = (i * 40503) % users
    const ip = `198.51.${(i >> 8) % 20}.${i % 250}`
    events.push(benchEvent(i, type, user, ip, t0 + i))
  }
  return events
}

export const everydayMix = (count: number, users: number, t0: number, start = 0): AuthEvent[] => {
  const events: AuthEvent[] = []
  for (let i = start; i < start + count; i++) {
    const r = mix(i) % 100
    const user = (i * 40503) % users
    const home = `10.${(user >> 16) & 255}.${(user >> 8) & 255}.${user & 255}`
    if (r < 80) events.push(benchEvent(user, 'login.succeeded', user, home, t0 + i))
    else if (r < 95) events.push(benchEvent(user, 'login.failed', user, home, t0 + i))
    else if (r < 98) events.push(benchEvent(i, 'login.failed', user, `203.0.113.${mix(i >>> 4) % 32}`, t0 + i))
    else events.push(benchEvent(user, 'custom', user, home, t0 + i))
  }
  return events
}
