/**
 * `npm run demo:attack`: plays two attacks against a running `npm run demo`, so a
 * newcomer sees scores rise and alerts fire on the Security Hub within a minute.
 *
 *   1. A brute force on one account: 15 wrong passwords for alice@example.com, from one IP.
 *   2. Credential stuffing: 40 leaked e-mail/password pairs tried from another IP; one of
 *      them (bob's, reused elsewhere) works.
 *
 * Environment: DEMO_URL (default http://127.0.0.1:3000), SQREEN_HUB_TOKEN (optional: with
 * it, the script reads the hub's API and prints the scores and alerts it caused).
 * The demo trusts X-Forwarded-For from this machine, which lets the script pose as attackers.
 */
import { pathToFileURL } from 'node:url'
import { DEMO_USERS, HUB_PATH } from './app.js'

export interface AttackResult {
  readonly logins: number
  /** Scores read from the hub's API (when a token was given), by user key. */
  readonly scores: Record<string, number>
  readonly alerts: number
}

const BRUTE_FORCE_IP = '203.0.113.66'
const STUFFING_IP = '198.51.100.23'
const ATTACKER_UA = 'python-requests/2.31.0'

const tryLogin = async (base: string, email: string, password: string, ip: string): Promise<number> => {
  const res = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip, 'user-agent': ATTACKER_UA },
    body: new URLSearchParams({ email, password }),
    redirect: 'manual',
  })
  await res.arrayBuffer()
  if (res.status !== 302) throw new Error(`POST ${base}/login answered ${res.status}; is this the demo app?`)
  return res.headers.get('location') === '/' ? 1 : 0
}

interface HubUser {
  userKey: string
  score: number
  rise24h: number
}

const hubGet = async <T>(base: string, token: string, path: string): Promise<T> => {
  const res = await fetch(`${base}${HUB_PATH}${path}`, { headers: { authorization: `Bearer ${token}` } })
  if (!res.ok) throw new Error(`GET ${HUB_PATH}${path} answered ${res.status} (is SQREEN_HUB_TOKEN the demo's token?)`)
  return (await res.json()) as T
}

export const runAttack = async (
  base: string,
  options: { token?: string; print?: (line: string) => void; waitMs?: number } = {},
): Promise<AttackResult> => {
  const print = options.print ?? (() => {})
  const [alice, bob] = DEMO_USERS as [(typeof DEMO_USERS)[0], (typeof DEMO_USERS)[0]]
  let logins = 0

  print(`1/2 Brute force: 15 wrong passwords for ${alice.email} from ${BRUTE_FORCE_IP}`)
  for (let i = 0; i < 15; i++) {
    await tryLogin(base, alice.email, `guess-${i}-${['123456', 'password', 'qwerty'][i % 3]}`, BRUTE_FORCE_IP)
    logins++
  }

  print(`2/2 Credential stuffing: 40 leaked e-mail/password pairs from ${STUFFING_IP} (one is ${bob.email}'s)`)
  let succeeded = 0
  for (let i = 0; i < 40; i++) {
    const [email, password] = i === 25 ? [bob.email, bob.password] : [`leaked-${i}@mail.example`, `hunter${i}`]
    succeeded += await tryLogin(base, email, password, STUFFING_IP)
    logins++
  }
  print(`   ${logins} login attempts sent, ${succeeded} succeeded.`)

  const scores: Record<string, number> = {}
  let alerts = 0
  if (options.token) {
    // The app forwards its events every half second: give the hub a moment.
    const deadline = Date.now() + (options.waitMs ?? 10_000)
    const wanted = [`login:${alice.email}`, `id:${bob.id}`]
    for (;;) {
      const { users } = await hubGet<{ users: HubUser[] }>(base, options.token, '/v1/users?sort=rise')
      for (const u of users) scores[u.userKey] = u.score
      alerts = (await hubGet<{ alerts: unknown[] }>(base, options.token, '/v1/alerts')).alerts.length
      if ((wanted.every((k) => (scores[k] ?? 0) > 10) && alerts >= 2) || Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, 250))
    }
    print('Scores on the hub (standing score, highest first):')
    for (const [key, score] of Object.entries(scores)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)) {
      print(`   ${key.padEnd(32)} ${score}`)
    }
    print(`Alerts raised: ${alerts}`)
  }
  print(`Open ${base}${HUB_PATH}/ to see the riskiest users, their timelines and the alerts.`)
  return { logins, scores, alerts }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const base = (process.env.DEMO_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '')
  const token = process.env.SQREEN_HUB_TOKEN || undefined
  runAttack(base, { ...(token ? { token } : {}), print: (line) => console.log(line) }).catch((err: unknown) => {
    console.error(`Attack simulation failed: ${err instanceof Error ? err.message : String(err)}`)
    console.error(`Is the demo running (npm run demo) at ${base}?`)
    process.exit(1)
  })
}
