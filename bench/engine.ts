import { mkdirSync, writeFileSync } from 'node:fs'
import type { AuthEvent } from '../lib/event.js'
import { attackMix, benchEvent, everydayMix } from './lib/events.js'

// The compiled build (npm run build first): tsx's per-closure __name helpers, absent from
// a real install, would otherwise distort the numbers. Types come from lib/, so this file
// type-checks before anything is built.
const dist = <T>(path: string): Promise<T> => import(new URL(`../dist/${path}`, import.meta.url).href) as Promise<T>
const { createDiagnostics } = await dist<typeof import('../lib/diagnostics.js')>('diagnostics.js')
const { createRiskEngine } = await dist<typeof import('../lib/risk/engine.js')>('risk/engine.js')
const { DEFAULT_POINTS } = await dist<typeof import('../lib/risk/points.js')>('risk/points.js')
const { riskIncrease } = await dist<typeof import('../lib/risk/trigger.js')>('risk/trigger.js')
const { MemoryStore } = await dist<typeof import('../lib/store/memory.js')>('store/memory.js')
type MemoryStore = InstanceType<typeof MemoryStore>

const smoke = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1'
const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc
if (!gc) {
  console.error('run with node --expose-gc (see the header of bench/engine.ts)')
  process.exit(1)
}

const quietLogger = { warn: () => {}, error: (m: string) => console.error(m) }
const T0 = Date.parse('2026-01-01T00:00:00Z')
const USERS = 50_000

const engineWith = (store: MemoryStore) =>
  createRiskEngine(
    {
      store,
      points: DEFAULT_POINTS,
      trigger: riskIncrease(),
      halfLifeMs: 7 * 86_400_000,
      maxScore: 100,
      clock: () => T0,
      onAlert: () => {},
    },
    createDiagnostics(quietLogger),
  )

/**
 * Minor page faults per event of each measure (first touches of memory the heap has just
 * been given: on this VM each costs the kernel about 15 µs, see bench/README), by measure.
 */
const faults: Record<string, number[]> = {}

type Mix = (count: number, users: number, t0: number, start?: number) => AuthEvent[]

/**
 * The events are made in pieces of `PIECE`, untimed, and scored before the next piece
 * is made. Until 2026-12-05 each round's 300,000 events were made at once and, with the
 * two mixes kept for every round, about 600,000 events (several hundred MB) stayed alive
 * through the whole run: a heap a server scoring events as they arrive never has, and in
 * a scratch A/B on this VM it made the same engine 7-8% slower (the bench's own memory,
 * not the engine's). The collector's work stays on the engine's side of the clock:
 * before a piece is timed, two young collections (untimed) move the new events out of
 * the young generation and clear what making them left; after the piece is scored, one
 * more young collection, timed, collects what scoring it left, so no garbage of the
 * engine is ever collected off the clock (the collections that happen on their own while
 * it scores are timed too).
 */
const PIECE = 20_000
/** Events per second scoring `count` events of `mix` from `t0` on `engine` (256 in flight, as a server would have). */
const timed = async (
  engine: ReturnType<typeof engineWith>,
  mix: Mix,
  count: number,
  users: number,
  t0: number,
  measure?: string,
): Promise<number> => {
  const inFlight = 256
  let faultCount = 0
  let ns = 0n
  for (let start = 0; start < count; start += PIECE) {
    const events = mix(Math.min(PIECE, count - start), users, t0, start)
    gc({ type: 'minor' })
    gc({ type: 'minor' })
    const faultsBefore = process.resourceUsage().minorPageFault
    const began = process.hrtime.bigint()
    for (let i = 0; i < events.length; i += inFlight) {
      const batch: Promise<void>[] = []
      for (let j = i; j < Math.min(events.length, i + inFlight); j++) {
        const pending = engine.process(events[j] as AuthEvent)
        if (pending) batch.push(pending)
      }
      if (batch.length > 0) await Promise.all(batch)
    }
    gc({ type: 'minor' })
    ns += process.hrtime.bigint() - began
    faultCount += process.resourceUsage().minorPageFault - faultsBefore
  }
  if (measure !== undefined) {
    faults[measure] ??= []
    faults[measure]?.push(faultCount / count)
  }
  return count / (Number(ns) / 1e9)
}

/** An empty store: every user and IP is new (what a process sees in its first minutes). */
const throughput = async (mix: Mix, count: number, users: number, measure?: string): Promise<number> => {
  const store = new MemoryStore()
  const rate = await timed(engineWith(store), mix, count, users, T0, measure)
  await store.close()
  return rate
}

/**
 * A running store: the same users and IPs seen before, time moving on (what a process
 * sees once it has been up a while). One store per stream, filled by one untimed pass,
 * then each round scores the stream again, `count` ms later than the round before.
 */
const running = (mix: Mix, count: number, measure: string) => {
  const store = new MemoryStore()
  const engine = engineWith(store)
  let round = 0
  return {
    async fill(): Promise<void> {
      await timed(engine, mix, count, USERS, T0 + round++ * count)
    },
    async next(): Promise<number> {
      gc()
      return timed(engine, mix, count, USERS, T0 + round++ * count, measure)
    },
    close: () => store.close(),
  }
}

const memoryPerUser = async (users: number): Promise<{ bytesPerUser: number; keys: number }> => {
  gc()
  const before = process.memoryUsage().heapUsed
  const store = new MemoryStore()
  const engine = engineWith(store)
  for (let u = 0; u < users; u += 500) {
    const batch: Promise<void>[] = []
    for (let v = u; v < Math.min(users, u + 500); v++) {
      const ip = `198.${18 + (v >> 16)}.${(v >> 8) & 255}.${v & 255}`
      const pending = engine.process(benchEvent(v, 'login.failed', v, ip, T0 + v))
      if (pending) batch.push(pending)
    }
    await Promise.all(batch)
    const successes: Promise<void>[] = []
    for (let v = u; v < Math.min(users, u + 500); v++) {
      const ip = `198.${18 + (v >> 16)}.${(v >> 8) & 255}.${v & 255}`
      const pending = engine.process(benchEvent(v, 'login.succeeded', v, ip, T0 + users + v))
      if (pending) successes.push(pending)
    }
    await Promise.all(successes)
  }
  // Idle: an hour later, when short-window state (the 10-minute stuffing window) has
  // expired and been swept; day-long counters, devices and ledgers remain.
  const later = T0 + 2 * users + 3_600_000
  for (let i = 0; i < 100; i++) store.sweep(later)
  gc()
  const after = process.memoryUsage().heapUsed
  const keys = store.size
  await store.close()
  return { bytesPerUser: (after - before) / users, keys }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

const rounds = smoke ? 1 : 5
const count = smoke ? 20_000 : 300_000
const mixes = { everyday: everydayMix, attack: attackMix }
// Warm-up: JIT and the disposable-domain list.
await throughput(everydayMix, 20_000, 5_000)
await throughput(attackMix, 20_000, 5_000)
const stores = {
  everyday: running(everydayMix, count, 'everydayRunningStore'),
  attack: running(attackMix, count, 'attackRunningStore'),
}
for (const store of Object.values(stores)) await store.fill()
const rates: Record<keyof typeof mixes, number[]> = { everyday: [], attack: [] }
const runningRates: Record<keyof typeof mixes, number[]> = { everyday: [], attack: [] }
// Interleaved, so a slow minute on this shared machine hits every measure alike.
for (let r = 0; r < rounds; r++) {
  for (const mix of ['everyday', 'attack'] as const) {
    gc?.()
    rates[mix].push(await throughput(mixes[mix], count, USERS, mix))
    runningRates[mix].push(await stores[mix].next())
  }
}
for (const store of Object.values(stores)) await store.close()
const users = smoke ? 10_000 : 100_000
const memory = await memoryPerUser(users)

const summary = (xs: number[]) => ({ median: Math.round(median(xs)), all: xs.map(Math.round) })
const result = {
  node: process.version,
  eventsPerRound: count,
  rounds,
  eventsPerSecond: {
    everyday: summary(rates.everyday),
    attack: summary(rates.attack),
    everydayRunningStore: summary(runningRates.everyday),
    attackRunningStore: summary(runningRates.attack),
  },
  pageFaultsPerEvent: Object.fromEntries(
    Object.entries(faults).map(([measure, xs]) => [measure, Math.round(median(xs) * 1000) / 1000]),
  ),
  memory: { users, keys: memory.keys, bytesPerIdleUser: Math.round(memory.bytesPerUser) },
  targets: { eventsPerSecond: 200_000, bytesPerIdleUser: 1024 },
}
console.log('| measure | result | target | page faults per event |')
console.log('| --- | --- | --- | --- |')
for (const mix of ['everyday', 'attack'] as const) {
  for (const [measure, label] of [
    [mix, 'empty store'],
    [`${mix}RunningStore`, 'running store'],
  ] as const) {
    console.log(
      `| engine + memory store, ${mix} mix, ${label}, events/s (median of ${rounds}) | ${result.eventsPerSecond[measure].median.toLocaleString('en')} | >= 200,000 | ${result.pageFaultsPerEvent[measure]} |`,
    )
  }
}
console.log(
  `| heap per idle tracked user at ${users.toLocaleString('en')} users | ${result.memory.bytesPerIdleUser} B | <= 1,024 B | |`,
)
console.log(JSON.stringify(result))
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/engine.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
