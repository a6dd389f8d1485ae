/**
 * Three real application processes (spec/helpers/redis-app.ts: Express +
 * passport-local + sqreenAuth with a RedisStore and a webhook), each on its own port,
 * attacked at the same time on one account through all of them. With the Redis store
 * they keep ONE ledger for the user (every process reads the same entries through
 * `sqreen.risk`) and exactly ONE alert reaches the webhook receiver in this process,
 * counted after every process has drained its scoring and deliveries. The control
 * runs the same attack on three processes with their own memory stores: three
 * ledgers, three alerts, which is what the shared store prevents.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import type { RiskSnapshot } from '../lib/index.js'
import { USERS, WebhookReceiver } from './helpers/receivers.js'
import { dropKeys, inspector, REDIS_URL, testPrefix } from './helpers/redis.js'

const WEBHOOK_SECRET = 'multiprocess-webhook-secret-0123456789'
const SECRET = 'multiprocess-hmac-secret-0123456789'
const PROCESSES = 3
const PER_PROCESS = 12
const target = USERS[0]!
// One /24 per process: three distinct IPs for distributed guessing, ten-plus failures per IP for brute force.
const ips = ['203.0.113.7', '198.51.100.7', '192.0.2.7']

interface AppProcess {
  readonly child: ChildProcess
  readonly url: string
}

const startProcesses = async (store: 'redis' | 'memory', prefix: string, webhookUrl: string): Promise<AppProcess[]> =>
  Promise.all(
    Array.from({ length: PROCESSES }, async () => {
      const child = fork(new URL('./helpers/redis-app.ts', import.meta.url).pathname, [], {
        execArgv: ['--import', 'tsx'],
        env: {
          ...process.env,
          STORE: store,
          REDIS_URL,
          PREFIX: prefix,
          WEBHOOK_URL: webhookUrl,
          WEBHOOK_SECRET,
          SQREEN_AUTH_SECRET: SECRET,
          USERS: JSON.stringify(USERS.map(({ id, email, password }) => ({ id, email, password }))),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      const [message] = (await Promise.race([
        once(child, 'message'),
        once(child, 'exit').then(([code]) => {
          throw new Error(`an app process exited (${code}) before listening`)
        }),
      ])) as [{ port: number }]
      return { child, url: `http://127.0.0.1:${message.port}` }
    }),
  )

const ask = async (p: AppProcess, message: string, answer: string): Promise<void> => {
  const reply = new Promise<void>((resolve) => {
    const on = (m: unknown): void => {
      if (m === answer) {
        p.child.off('message', on)
        resolve()
      }
    }
    p.child.on('message', on)
  })
  p.child.send(message)
  await reply
}

const stop = async (processes: readonly AppProcess[]): Promise<void> => {
  await Promise.all(
    processes.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return
      const exited = once(p.child, 'exit')
      p.child.send('exit')
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }),
  )
}

/** The attack: PER_PROCESS wrong passwords for the same account through every process, all at once. */
const attack = async (processes: readonly AppProcess[]): Promise<number[]> =>
  Promise.all(
    processes.flatMap((p, n) =>
      Array.from({ length: PER_PROCESS }, async (_, i) => {
        const res = await fetch(`${p.url}/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ips[n]! },
          body: new URLSearchParams({ username: target.email, password: `wrong-${n}-${i}` }),
        })
        await res.arrayBuffer()
        return res.status
      }),
    ),
  )

const risk = async (p: AppProcess, key: string): Promise<RiskSnapshot> =>
  (await (await fetch(`${p.url}/risk/${encodeURIComponent(key)}`)).json()) as RiskSnapshot

const stats = async (p: AppProcess): Promise<{ counters: Record<string, number> }> =>
  (await (await fetch(`${p.url}/stats`)).json()) as { counters: Record<string, number> }

const detections = (snapshot: RiskSnapshot): string[] => snapshot.entries.map((e) => e.detection).sort()

describe('RedisStore: several application processes', { timeout: 60_000 }, () => {
  let admin: Redis
  before(async () => {
    admin = await inspector()
  })
  after(async () => {
    await admin?.quit()
  })

  it(`${PROCESSES} processes attacked at once on one account: one ledger, exactly one webhook alert`, async () => {
    const receiver = await WebhookReceiver.start(WEBHOOK_SECRET)
    const prefix = testPrefix('multiprocess')
    const processes = await startProcesses('redis', prefix, receiver.url)
    try {
      const statuses = await attack(processes)
      assert.deepEqual(statuses, Array(PROCESSES * PER_PROCESS).fill(401))
      await receiver.waitFor(1, 10_000)
      // "Long enough that no second alert can come": every process has scored all its
      // events and finished (or given up) every delivery.
      await Promise.all(processes.map((p) => ask(p, 'drain', 'drained')))
      assert.equal(receiver.requests.length, 1, 'exactly one webhook POST')
      const [alert] = receiver.verified
      assert.equal(alert?.userKey, `id:${target.id}`)
      assert.equal(alert?.level, 10)

      const counters = await Promise.all(processes.map(async (p) => (await stats(p)).counters))
      assert.deepEqual(
        counters.map((c) => c.events),
        Array(PROCESSES).fill(PER_PROCESS),
      )
      assert.equal(
        counters.reduce((sum, c) => sum + (c.alerts ?? 0), 0),
        1,
        'one alert raised across all processes',
      )
      assert.ok(counters.every((c) => c.store_errors === undefined))

      // One ledger: every process reads the same entries, the attack's detections each once.
      const seen = await Promise.all(processes.map((p) => risk(p, `id:${target.id}`)))
      for (const snapshot of seen.slice(1)) assert.deepEqual(snapshot.entries, seen[0]!.entries)
      assert.deepEqual(detections(seen[0]!), [
        'brute_force',
        'distributed_guessing',
        'failure_burst',
        ...Array(5).fill('wrong_password'),
      ])
      // The alert was raised from that ledger: each detection it lists is one of its entries.
      const ledger = seen[0]!.entries.map((e) => `${e.detection}@${new Date(e.at).toISOString()}`)
      for (const d of alert?.detections ?? []) {
        assert.ok(ledger.includes(`${d.detection}@${d.at}`), `${d.detection} at ${d.at} is not on the ledger`)
      }
    } finally {
      await stop(processes)
      await receiver.close()
      await dropKeys(admin, prefix)
    }
  })

  it('control: the same attack on processes with their own memory stores gives one ledger and one alert per process', async () => {
    const receiver = await WebhookReceiver.start(WEBHOOK_SECRET)
    const processes = await startProcesses('memory', 'unused:', receiver.url)
    try {
      await attack(processes)
      await Promise.all(processes.map((p) => ask(p, 'drain', 'drained')))
      assert.equal(receiver.requests.length, PROCESSES)
      const seen = await Promise.all(processes.map((p) => risk(p, `id:${target.id}`)))
      for (const snapshot of seen) assert.ok(!detections(snapshot).includes('distributed_guessing'))
    } finally {
      await stop(processes)
      await receiver.close()
    }
  })
})
