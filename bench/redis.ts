/**
 * Risk engine throughput with the Redis store (issue 4's target: >= 20,000 events/s
 * from one process on loopback), with the memory store measured in the same run on
 * the same events for comparison.
 *
 *   npm run build && node --import tsx bench/redis.ts            # full: 3 rounds of 100,000 events per store
 *   npm run build && node --import tsx bench/redis.ts --smoke    # seconds, proves it runs
 *   REDIS_URL=redis://127.0.0.1:6380 ...                         # another server (default redis://127.0.0.1:6379)
 *   ... --in-flight 1024                                         # events in flight (default 512)
 *
 * The event mix is bench/lib/events.ts's attack mix (60% failed logins, 30% successes, 10%
 * app-reported attacks over 50,000 users and 5,000 IPs), timed from now (the Redis
 * TTLs are real). `--in-flight` events are kept in flight: as one completes the next
 * starts (a sliding window, as a busy server's concurrent logins would), so the
 * store's auto-pipelining sees many batches per turn of the event loop. Each round
 * uses a fresh engine and store under a fresh key prefix, deleted afterwards; the
 * median of the rounds is reported, with the CPU time each event costs this process
 * (process.cpuUsage) and the Redis server (INFO cpu), which share the machine's cores.
 * Every event must be scored: a store error fails the run. Results go to
 * bench/results/redis.json.
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import type { AuthEvent } from '../lib/event.js'
import type { Store } from '../lib/store/store.js'
import { attackMix } from './lib/events.js'

// The compiled build (npm run build first), as in bench/engine.ts.
const dist = <T>(path: string): Promise<T> => import(new URL(`../dist/${path}`, import.meta.url).href) as Promise<T>
const { createDiagnostics } = await dist<typeof import('../lib/diagnostics.js')>('diagnostics.js')
const { createRiskEngine } = await dist<typeof import('../lib/risk/engine.js')>('risk/engine.js')
const { DEFAULT_POINTS } = await dist<typeof import('../lib/risk/points.js')>('risk/points.js')
const { riskIncrease } = await dist<typeof import('../lib/risk/trigger.js')>('risk/trigger.js')
const { MemoryStore } = await dist<typeof import('../lib/store/memory.js')>('store/memory.js')
const { RedisStore } = await dist<typeof import('../lib/store/redis.js')>('store/redis.js')

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}
const smoke = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1'
const inFlight = Number(argValue('--in-flight') ?? 512)
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const rounds = smoke ? 1 : 3
const count = smoke ? 5_000 : 100_000

const T0 = Date.now()

interface Round {
  eventsPerSecond: number
  /** CPU time of this process per event, µs (the engine, the store's encoding, ioredis). */
  nodeCpuPerEvent: number
  storeErrors: number
  alerts: number
}

const throughput = async (store: Store, events: readonly AuthEvent[]): Promise<Round> => {
  let alerts = 0
  const diag = createDiagnostics({ warn: () => {}, error: () => {} })
  const engine = createRiskEngine(
    {
      store,
      points: DEFAULT_POINTS,
      trigger: riskIncrease(),
      halfLifeMs: 7 * 86_400_000,
      maxScore: 100,
      clock: () => T0,
      onAlert: () => {
        alerts++
      },
    },
    diag,
  )
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  let next = 0
  // A sliding window of `inFlight` events: each lane starts its next event when one completes.
  const lane = async (): Promise<void> => {
    while (next < events.length) {
      const pending = engine.process(events[next++] as AuthEvent)
      if (pending) await pending
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const used = process.cpuUsage(cpu)
  return {
    eventsPerSecond: events.length / seconds,
    nodeCpuPerEvent: (used.user + used.system) / events.length,
    storeErrors: diag.snapshot().counters.store_errors ?? 0,
    alerts,
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

/** Deletes a round's keys (SCAN + UNLINK). */
const dropKeys = async (admin: Redis, prefix: string): Promise<number> => {
  let cursor = '0'
  let dropped = 0
  do {
    const [nextCursor, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000)
    cursor = nextCursor
    if (keys.length > 0) dropped += await admin.unlink(...keys)
  } while (cursor !== '0')
  return dropped
}

/** The server's CPU time so far, µs (INFO cpu), to report what each event costs Redis. */
const serverCpu = async (admin: Redis): Promise<number> => {
  const info = await admin.info('cpu')
  const field = (name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN)
  return (field('used_cpu_sys') + field('used_cpu_user')) * 1e6
}

const admin = new Redis(url, { maxRetriesPerRequest: 1 })
const events = attackMix(count, 50_000, T0)
const memoryRates: number[] = []
const redisRates: number[] = []
const nodeCpu: number[] = []
const redisCpu: number[] = []
let keysPerRound = 0
let alertsRedis = 0
let alertsMemory = 0
try {
  // Warm-up: JIT, the disposable-domain list, the script cache.
  const warm = new RedisStore({ url, prefix: `sqreen-bench:warm:${randomUUID()}:` })
  await throughput(warm, attackMix(smoke ? 1_000 : 10_000, 5_000, T0))
  await warm.close()
  await throughput(new MemoryStore(), attackMix(10_000, 5_000, T0))
  for (let r = 0; r < rounds; r++) {
    // Interleaved, so a drift of the machine does not fall on one store only.
    const memory = new MemoryStore()
    const m = await throughput(memory, events)
    await memory.close()
    memoryRates.push(m.eventsPerSecond)
    alertsMemory = m.alerts

    const prefix = `sqreen-bench:${randomUUID()}:`
    const store = new RedisStore({ url, prefix, timeout: 10_000 })
    const cpuBefore = await serverCpu(admin)
    const result = await throughput(store, events)
    redisCpu.push((await serverCpu(admin)) - cpuBefore)
    nodeCpu.push(result.nodeCpuPerEvent)
    await store.close()
    if (result.storeErrors > 0)
      throw new Error(`${result.storeErrors} events could not be scored: see the Redis server`)
    redisRates.push(result.eventsPerSecond)
    alertsRedis = result.alerts
    keysPerRound = await dropKeys(admin, prefix)
  }
  await dropKeys(admin, 'sqreen-bench:warm:')
} finally {
  admin.disconnect()
}

const info = {
  node: process.version,
  redis: url,
  eventsPerRound: events.length,
  rounds,
  inFlight,
  redisEventsPerSecond: { median: Math.round(median(redisRates)), all: redisRates.map(Math.round) },
  memoryEventsPerSecond: { median: Math.round(median(memoryRates)), all: memoryRates.map(Math.round) },
  cpuPerEvent: {
    node: Math.round(median(nodeCpu) * 10) / 10,
    redis: Math.round((median(redisCpu) / events.length) * 10) / 10,
    unit: 'µs',
  },
  keysPerRound,
  alerts: { redis: alertsRedis, memory: alertsMemory },
  target: { redisEventsPerSecond: 20_000 },
}
console.log('| measure | result | target |')
console.log('| --- | --- | --- |')
console.log(
  `| engine + Redis store, events/s, ${inFlight} in flight (median of ${rounds}) | ${info.redisEventsPerSecond.median.toLocaleString('en')} | >= 20,000 |`,
)
console.log(
  `| engine + memory store, same events, same run (median of ${rounds}) | ${info.memoryEventsPerSecond.median.toLocaleString('en')} | (baseline) |`,
)
console.log(
  `| CPU per event with the Redis store: this process / the Redis server | ${info.cpuPerEvent.node} µs / ${info.cpuPerEvent.redis} µs | |`,
)
console.log(JSON.stringify(info))
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/redis.json', import.meta.url), `${JSON.stringify(info, null, 2)}\n`)
