/**
 * The event mix the engine benchmarks score (bench/engine.ts, bench/redis.ts): 60%
 * wrong passwords, 30% successes, 10% attacks reported by the app, spread
 * deterministically over `users` users and 5,000 IPs, one event per millisecond
 * from `t0`.
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

export const eventMix = (count: number, users: number, t0: number): AuthEvent[] => {
  const events: AuthEvent[] = []
  for (let i = 0; i < count; i++) {
    const r = (i * 2654435761) % 100
    const type = r < 60 ? 'login.failed' : r < 90 ? 'login.succeeded' : 'custom'
    const user = (i * 40503) % users
    const ip = `198.51.${(i >> 8) % 20}.${i % 250}`
    events.push(benchEvent(i, type, user, ip, t0 + i))
  }
  return events
}
