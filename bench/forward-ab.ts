/**
 * Two builds' forwarding cost in one run (a same-run A/B for changes to the forwarder):
 * two copies of the bench's login app (bench/lib/server.ts, mode `forward`: capture plus
 * forwarding every event to a hub in a process of its own), one loading build A and one
 * build B, both loaded at once on one CPU in each round, as `npm run bench -- --concurrent`
 * does; the headline is the median of the rounds' throughput ratios (B / A) and of their
 * CPU-per-login ratios. A/A (`--a dist --b dist`) gives the method's own spread.
 * `--mode candidate`: the same for capture alone (no forwarding, no hub), for changes to
 * capture that `npm run bench` cannot resolve between two separate runs.
 *
 *   npm run build && node --import tsx bench/forward-ab.ts --a bench/results/var/base --b dist [--rounds 8 --duration 3]
 *   npm run build && node --import tsx bench/forward-ab.ts --mode candidate --a bench/results/var/base --b dist
 */
import { type ChildProcess, fork } from 'node:child_process'
import { parseArgs } from 'node:util'
import { type Measurement, measure } from './lib/load.js'
import { pin } from './lib/pin.js'
import { type ChildMessage, LOGIN_BAD, LOGIN_OK, type ServerStats } from './lib/protocol.js'
import { median } from './lib/stats.js'

const { values: args } = parseArgs({
  options: {
    a: { type: 'string', default: 'dist' },
    b: { type: 'string', default: 'dist' },
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    scoring: { type: 'string', default: 'off' },
    mode: { type: 'string', default: 'forward' },
  },
})
if (args.mode !== 'forward' && args.mode !== 'candidate')
  throw new Error(`--mode must be forward or candidate, got "${args.mode}"`)
const forwarding = args.mode === 'forward'
const HUB_SECRET = 'bench-forward-ab-secret-0123456789abcdefghij'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

const child = (entry: string, argv: string[], env: Record<string, string>): ChildProcess =>
  fork(new URL(entry, import.meta.url).pathname, argv, {
    execArgv: ['--import', import.meta.resolve('tsx')],
    env: { ...process.env, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })

const next = <T>(c: ChildProcess, type: string): Promise<T> =>
  new Promise((resolve) => {
    const on = (m: { type: string }): void => {
      if (m.type !== type) return
      c.off('message', on)
      resolve(m as T)
    }
    c.on('message', on)
  })

const hub = forwarding ? child('./hub.ts', ['--serve'], { BENCH_HUB_KEY: HUB_SECRET }) : undefined
const hubPort = hub ? (await next<{ port: number }>(hub, 'ready')).port : 0
const servers = await Promise.all(
  [args.a, args.b].map(async (dist) => {
    const c = child('./lib/server.ts', [args.mode as string, 'dist'], {
      BENCH_DIST: dist,
      BENCH_SCORING: args.scoring,
      BENCH_FORWARD_URL: `http://127.0.0.1:${hubPort}/hub/v1/events`,
      BENCH_FORWARD_KEY: HUB_SECRET,
    })
    const { port } = await next<Extract<ChildMessage, { type: 'ready' }>>(c, 'ready')
    return { c, url: `http://127.0.0.1:${port}` }
  }),
)
const pinned = pin(servers.map((s) => s.c.pid as number))
const stats = (c: ChildProcess): Promise<ServerStats> => {
  const answer = next<ServerStats>(c, 'stats')
  c.send({ type: 'stats' })
  return answer
}
const requests = [
  { method: 'POST' as const, path: '/login', headers: FORM, body: LOGIN_OK },
  { method: 'POST' as const, path: '/login', headers: FORM, body: LOGIN_BAD },
]
const load = async (
  s: (typeof servers)[number],
  seconds: number,
): Promise<Measurement & { cpu: number; survived: number; gc: number }> => {
  const before = await stats(s.c)
  const m = await measure({ url: s.url, connections: 10, duration: seconds, requests })
  const after = await stats(s.c)
  if (m.errors > 0 || m.timeouts > 0) throw new Error(`${s.url}: ${m.errors} errors, ${m.timeouts} timeouts`)
  const n = Math.max(1, m.responses)
  return {
    ...m,
    cpu: (after.cpuMicros - before.cpuMicros) / n,
    survived: (after.survivedBytes - before.survivedBytes) / n,
    gc: ((after.gcMillis - before.gcMillis) * 1000) / n,
  }
}
await Promise.all(servers.map((s) => load(s, Number(args.warmup))))
const ratios: number[] = []
const cpuRatios: number[] = []
for (let r = 0; r < Number(args.rounds); r++) {
  const [a, b] = (await Promise.all(servers.map((s) => load(s, Number(args.duration))))) as [
    Awaited<ReturnType<typeof load>>,
    Awaited<ReturnType<typeof load>>,
  ]
  ratios.push(b.rps / a.rps)
  cpuRatios.push(b.cpu / a.cpu)
  process.stderr.write(
    `  round ${r + 1}: ${[a, b].map((m, i) => `${'AB'[i]} ${m.rps.toFixed(0)} req/s ${m.cpu.toFixed(0)} µs CPU/login (GC ${m.gc.toFixed(0)}, ${(m.survived / 1000).toFixed(1)} KB survived)`).join(', ')}, B/A ${(b.rps / a.rps).toFixed(3)}\n`,
  )
}
const sorted = [...ratios].sort((x, y) => x - y)
console.log(
  `${args.mode} A/B (${pinned}; scoring ${args.scoring}): A ${args.a}, B ${args.b}: throughput B/A median ${median(ratios).toFixed(3)} (${sorted[0]?.toFixed(3)} - ${sorted[sorted.length - 1]?.toFixed(3)}), CPU per login B/A median ${median(cpuRatios).toFixed(3)}`,
)
// The servers first: closing flushes their forwarders to the hub.
await Promise.all(
  servers.map(
    (s) =>
      new Promise<void>((resolve) => {
        s.c.once('exit', () => resolve())
        s.c.send({ type: 'close' })
      }),
  ),
)
// What the hub received: events per batch tells whether the forwarders filled their batches.
if (hub) {
  const hubAnswer = next<{ counters: Record<string, number> }>(hub, 'stats')
  hub.send({ type: 'stats' })
  const { counters } = await hubAnswer
  const batches = counters['hub.batches'] ?? 0
  console.log(
    `hub: ${counters['hub.accepted'] ?? 0} events accepted in ${batches} batches (${((counters['hub.events_in'] ?? 0) / Math.max(1, batches)).toFixed(0)} per batch)`,
  )
  hub.send({ type: 'close' })
}
