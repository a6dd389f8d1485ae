/**
 * Security Hub ingest throughput (issue 4's target: >= 50,000 events/s per core):
 * signed batches of 500 events POSTed to a real hub router over HTTP (wire format v2:
 * the JSON batch as the body, its detached JWS with an unencoded payload in the
 * Sqreen-Signature header), each batch verified (HS256, then EdDSA), every event
 * validated, scored by the risk engine with the memory store, and recorded in the
 * hub's views.
 *
 *   npm run build && node --import tsx bench/hub.ts            # full: 5 rounds of 60 batches per algorithm
 *   npm run build && node --import tsx bench/hub.ts --smoke    # seconds, proves it runs
 *   ... --pin    # the hub (all its threads) on the last CPU, this process on the others (taskset)
 *
 * Method: the hub runs alone in a child process (the build in dist/, as users install
 * it); this process pre-signs every batch (signing is the forwarder's cost, not the
 * hub's) and POSTs them two at a time. "Per core" is events accepted divided by the
 * hub process's own CPU time (user + system, `process.cpuUsage()` around each round),
 * which the client's work on the other core does not inflate; wall-clock events/s is
 * printed too. A warm-up round comes first; the median of the rounds is reported.
 * The event mix is the engine benchmark's: 60% failures, 30% successes, 10% attacks
 * reported by the app, over 50,000 users and 5,000 IPs. A breakdown measures, in this
 * process, what verification (the hub's own verifier from dist/: jose's flattenedVerify,
 * then one JSON.parse and the claim checks; JSON.parse alone shown apart), validation,
 * the views and the engine alone cost per event.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { PerformanceObserver } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { FlattenedSign } from 'jose'
import type { AuthEvent } from '../lib/event.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER } from '../lib/transport/wire.js'
import { pin } from './lib/pin.js'
import { median } from './lib/stats.js'
import { survivorCounter } from './lib/survivors.js'

const { values: args } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: process.env.BENCH_SMOKE === '1' },
    serve: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    batches: { type: 'string' },
    pin: { type: 'boolean', default: process.env.BENCH_PIN === '1' },
    mix: { type: 'string', default: process.env.BENCH_HUB_MIX ?? 'attack' },
    concurrent: { type: 'boolean', default: false },
    baseline: { type: 'string' },
  },
})
if (args.mix !== 'attack' && args.mix !== 'everyday')
  throw new Error(`--mix must be attack or everyday, got "${args.mix}"`)
const everyday = args.mix === 'everyday'

const BATCH = 500
const TOKEN = 'bench-hub-token-0123456789abcdefghijklmnop'
const SECRET = 'bench-hub-shared-secret-0123456789abcdefghij'
// A URL held in a variable, so TypeScript does not require a build to type-check this file.
const DIST = new URL('../dist/index.js', import.meta.url).href
/** The build a hub child loads: dist/, or another build (`--concurrent --baseline <dir>`). */
const CHILD_DIST = process.env.BENCH_HUB_DIST ?? DIST
const DIST_SCHEMA = new URL('../dist/hub/schema.js', import.meta.url).href
const DIST_INGEST = new URL('../dist/hub/ingest.js', import.meta.url).href
const DIST_VIEWS = new URL('../dist/hub/views.js', import.meta.url).href
const DIST_ENGINE = new URL('../dist/risk/engine.js', import.meta.url).href
const DIST_DIAG = new URL('../dist/diagnostics.js', import.meta.url).href

type Lib = typeof import('../lib/index.js')

// ---------------------------------------------------------------------------------------------
// Child: one hub on 127.0.0.1, reporting its CPU time over IPC.

const serve = async (): Promise<void> => {
  const { sqreenHub } = (await import(CHILD_DIST)) as Lib
  const express = (await import('express')).default
  const key = process.env.BENCH_HUB_KEY ?? ''
  const hub = sqreenHub({
    key,
    token: TOKEN,
    // An onAlert callback: with no channel at all, alerts would be written to the console.
    onAlert: () => {},
    logger: { warn: () => {}, error: (m) => process.stderr.write(`${m}\n`) },
    // BENCH_HUB_REORDER=<ms>: the reorder window (default: the hub's own, 2 s; 0 scores before answering).
    ...(process.env.BENCH_HUB_REORDER === undefined ? {} : { reorderWindow: Number(process.env.BENCH_HUB_REORDER) }),
  })
  // What the collector costs: pause time (\`gc\` performance entries) and the bytes that
  // survived young collections (copied or promoted: what scavenges cost and what fills the
  // old generation, whose growth is the hub's page faults).
  let gcMillis = 0
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMillis += entry.duration
  }).observe({ type: 'gc' })
  const survivors = survivorCounter()
  const app = express()
  app.use('/hub', hub)
  const server = app.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port })
  })
  process.on('message', async (message: { type: string }) => {
    if (message.type === 'stats') {
      // The default reorder window holds events for 2 s: the round's events are scored
      // (and their CPU counted) before the round's CPU time is read.
      await hub.flush()
      const cpu = process.cpuUsage()
      process.send?.({
        gcMillis,
        survivedBytes: survivors.total(),
        type: 'stats',
        cpuMicros: cpu.user + cpu.system,
        systemMicros: cpu.system,
        minorFaults: process.resourceUsage().minorPageFault,
        counters: hub.stats().counters,
      })
    } else if (message.type === 'close') {
      server.closeAllConnections()
      server.close(() => void hub.close().then(() => process.exit(0)))
    }
  })
  process.on('disconnect', () => process.exit(0))
}

// ---------------------------------------------------------------------------------------------
// Parent: events, signed batches, load, report.

interface HubStats {
  readonly cpuMicros: number
  /** Of which in the kernel (sockets, memory mappings). */
  readonly systemMicros: number
  /** Minor page faults so far (first touches of memory: where most of the kernel's share goes). */
  readonly minorFaults: number
  /** Collector pauses so far, ms. */
  readonly gcMillis: number
  /** Bytes that survived young collections so far. */
  readonly survivedBytes: number
  readonly counters: Record<string, number>
}

interface HubChild {
  readonly pid: number
  readonly url: string
  stats(): Promise<HubStats>
  close(): Promise<void>
}

const startHub = async (key: string, dist?: string): Promise<HubChild> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], {
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of the hub process, to see where ingest time goes.
    execArgv: [
      '--import',
      import.meta.resolve('tsx'),
      // BENCH_HUB_FLAGS='--max-semi-space-size=64 ...': V8 flags for the hub process (collector experiments).
      ...(process.env.BENCH_HUB_FLAGS ? process.env.BENCH_HUB_FLAGS.split(' ') : []),
      ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
    ],
    env: {
      ...process.env,
      BENCH_HUB_KEY: key,
      NODE_ENV: 'production',
      ...(dist === undefined ? {} : { BENCH_HUB_DIST: dist }),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const next = <T>(type: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hub child sent no "${type}"`)), 30_000)
      const on = (m: { type: string }): void => {
        if (m.type !== type) return
        clearTimeout(timer)
        child.off('message', on)
        resolve(m as T)
      }
      child.on('message', on)
    })
  const { port } = await next<{ port: number }>('ready')
  return {
    pid: child.pid as number,
    url: `http://127.0.0.1:${port}/hub/v1/events`,
    stats: () => {
      const answer = next<HubStats>('stats')
      child.send({ type: 'stats' })
      return answer
    },
    close: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve())
        child.send({ type: 'close' })
      }),
  }
}

const USERS = 50_000
const IPS = 5_000
const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
]

/**
 * The events of a batch, as a forwarder would send them. `attack` (the default): 60% wrong
 * passwords under the attempted login, 30% successes (most of them merging that login's
 * failures into the user), 10% attacks reported by the app, from 5,000 shared IPs.
 * `--mix everyday`: each user from a home IP, 80% successes, 15% typos (linked to the user,
 * as the middleware does once the login has succeeded before), 3% failures from a few
 * scanning IPs, 2% attacks reported by the app.
 */
const makeEvents = (n: number, seed: number): AuthEvent[] => {
  let x = seed
  const rand = (): number => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648
  }
  // One millisecond apart, each its own string, as a forwarder's batch under load.
  const base = Date.now() - n
  return Array.from({ length: n }, (_, i): AuthEvent => {
    const at = new Date(base + i).toISOString()
    const user = Math.floor(rand() * USERS)
    const ipN = Math.floor(rand() * IPS)
    const r = rand()
    const ip = everyday
      ? r >= 0.95 && r < 0.98
        ? `203.0.113.${ipN % 32}`
        : `10.${(user >> 16) & 255}.${(user >> 8) & 255}.${user & 255}`
      : `10.${(ipN >> 8) & 255}.${ipN & 255}.${1 + (user % 250)}`
    const common = {
      id: randomUUID(),
      at,
      mode: 'automatic' as const,
      ip,
      userAgent: UAS[user % UAS.length] as string,
    }
    if (everyday && r < 0.98) {
      const ok = r < 0.8
      return {
        ...common,
        type: ok ? 'login.succeeded' : 'login.failed',
        source: 'passport',
        strategy: 'local',
        ...(ok ? {} : { reason: 'invalid_credentials' as const }),
        identity: { id: user, email: `user${user}@example.com` },
        userKey: `id:${user}`,
        loginKey: `login:user${user}@example.com`,
        status: ok ? 200 : 401,
        attempts: [
          ok
            ? { strategy: 'local', outcome: 'succeeded' }
            : { strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' },
        ],
      }
    }
    if (!everyday && r < 0.6) {
      return {
        ...common,
        type: 'login.failed',
        source: 'passport',
        strategy: 'local',
        reason: 'invalid_credentials',
        identity: { login: `user${user}@example.com` },
        userKey: `login:user${user}@example.com`,
        loginKey: `login:user${user}@example.com`,
        status: 401,
        attempts: [{ strategy: 'local', outcome: 'failed', reason: 'invalid_credentials' }],
      }
    }
    if (!everyday && r < 0.9) {
      return {
        ...common,
        type: 'login.succeeded',
        source: 'passport',
        strategy: 'local',
        identity: { id: user, email: `user${user}@example.com` },
        userKey: `id:${user}`,
        loginKey: `login:user${user}@example.com`,
        status: 200,
        attempts: [{ strategy: 'local', outcome: 'succeeded' }],
      }
    }
    return {
      ...common,
      type: 'custom',
      source: 'sdk',
      strategy: null,
      identity: { id: user },
      userKey: `id:${user}`,
      name: 'sql_injection',
      severity: 'medium',
      properties: { param: 'q' },
    }
  })
}

/** A batch as the forwarder sends it: the JSON body, and the detached JWS for its header. */
interface Signed {
  readonly body: string
  readonly signature: string
}

const signAll = async (
  batches: readonly AuthEvent[][],
  alg: 'HS256' | 'EdDSA',
  key: Parameters<FlattenedSign['sign']>[0],
): Promise<Signed[]> => {
  const now = Math.floor(Date.now() / 1000)
  const utf8 = new TextEncoder()
  return Promise.all(
    batches.map(async (events) => {
      const body = JSON.stringify({ v: 2, iat: now, exp: now + 240, jti: randomUUID(), dropped: 0, events })
      const jws = await new FlattenedSign(utf8.encode(body))
        .setProtectedHeader({ alg, typ: 'sqreen-auth-batch', b64: false, crit: ['b64'] })
        .sign(key)
      return { body, signature: `${jws.protected}..${jws.signature}` }
    }),
  )
}

/** POSTs the batches, `inFlight` at a time; every answer must be 200 with all events accepted. */
const post = async (url: string, batches: readonly Signed[], inFlight = 2): Promise<void> => {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < batches.length) {
      const { body, signature } = batches[next++] as Signed
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': BATCH_CONTENT_TYPE, [BATCH_SIGNATURE_HEADER]: signature },
        body,
      })
      const answer = (await res.json()) as { accepted?: number; error?: string }
      if (res.status !== 200 || answer.accepted !== BATCH) {
        throw new Error(`the hub answered ${res.status} ${JSON.stringify(answer)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
}

interface AlgResult {
  readonly alg: string
  readonly perCore: { median: number; all: number[] }
  readonly wall: { median: number; all: number[] }
  readonly breakdown: {
    verifyMicrosPerEvent: number
    parseMicrosPerEvent: number
    validateMicrosPerEvent: number
    viewsMicrosPerEvent: number
    engineMicrosPerEvent: number
  }
}

const main = async (): Promise<void> => {
  const smoke = args.smoke === true
  const rounds = Number(args.rounds ?? (smoke ? 1 : 5))
  const perRound = Number(args.batches ?? (smoke ? 4 : 60))
  const { checkEvent } = (await import(DIST_SCHEMA)) as typeof import('../lib/hub/schema.js')
  const { createBatchVerifier } = (await import(DIST_INGEST)) as typeof import('../lib/hub/ingest.js')
  const { HubViews } = (await import(DIST_VIEWS)) as typeof import('../lib/hub/views.js')
  const { createRiskEngine } = (await import(DIST_ENGINE)) as typeof import('../lib/risk/engine.js')
  const { createDiagnostics } = (await import(DIST_DIAG)) as typeof import('../lib/diagnostics.js')
  const { DEFAULT_POINTS, MemoryStore, riskIncrease } = (await import(DIST)) as Lib
  const ed = generateKeyPairSync('ed25519')
  const algs = [
    {
      alg: 'HS256' as const,
      hubKey: SECRET,
      signKey: new TextEncoder().encode(SECRET),
      verifyKey: new TextEncoder().encode(SECRET),
    },
    {
      alg: 'EdDSA' as const,
      hubKey: ed.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      signKey: ed.privateKey,
      verifyKey: ed.publicKey,
    },
  ]
  const results: AlgResult[] = []
  let pinned = 'no'
  let seed = 1
  for (const { alg, hubKey, signKey, verifyKey } of algs) {
    const hub = await startHub(hubKey)
    if (args.pin === true) pinned = pin([hub.pid])
    try {
      const batchesOf = (count: number): AuthEvent[][] => Array.from({ length: count }, () => makeEvents(BATCH, seed++))
      // Warm-up (JIT, the users' first entries), not recorded.
      await post(hub.url, await signAll(batchesOf(Math.max(2, Math.floor(perRound / 2))), alg, signKey))
      const perCore: number[] = []
      const wall: number[] = []
      for (let round = 0; round < rounds; round++) {
        const batches = await signAll(batchesOf(perRound), alg, signKey)
        const before = await hub.stats()
        const started = performance.now()
        await post(hub.url, batches)
        // Stats flush the reorder window first: the wall time includes the last events' scoring.
        const after = await hub.stats()
        const seconds = (performance.now() - started) / 1000
        const events = (after.counters['hub.accepted'] ?? 0) - (before.counters['hub.accepted'] ?? 0)
        if (events !== perRound * BATCH) throw new Error(`${events} events accepted, ${perRound * BATCH} sent`)
        const cpuSeconds = (after.cpuMicros - before.cpuMicros) / 1e6
        const systemShare = (after.systemMicros - before.systemMicros) / (after.cpuMicros - before.cpuMicros)
        const faults = (after.minorFaults - before.minorFaults) / events
        const gcShare = (after.gcMillis - before.gcMillis) / ((after.cpuMicros - before.cpuMicros) / 1000)
        const survived = (after.survivedBytes - before.survivedBytes) / events
        perCore.push(events / cpuSeconds)
        wall.push(events / seconds)
        process.stderr.write(
          `  ${alg} round ${round + 1}/${rounds}: ${events} events, ${(events / cpuSeconds).toFixed(0)} events per CPU-second (${(100 * systemShare).toFixed(0)}% of it in the kernel, ${faults.toFixed(2)} page faults per event; GC pauses ${(100 * gcShare).toFixed(0)}%, ${survived.toFixed(0)} B per event survived young collections), ${(events / seconds).toFixed(0)} events/s wall\n`,
        )
      }

      // Breakdown, in this process: the hub's verifier (signature, typ, one JSON.parse, the
      // claims), JSON.parse alone (included in the former), then validation alone.
      const sample = (await signAll(batchesOf(Math.min(perRound, 10)), alg, signKey)).map((b) => ({
        body: Buffer.from(b.body),
        signature: b.signature,
      }))
      const verify = createBatchVerifier([{ alg, key: verifyKey }], {
        maxTokenAgeSeconds: 300,
        clockToleranceSeconds: 30,
      })
      let t = performance.now()
      const payloads = []
      for (const { body, signature } of sample) {
        const verified = await verify(body, signature)
        if (!verified.ok) throw new Error(`the verifier refused a batch: ${verified.refusal.body.message}`)
        payloads.push(verified.batch as { events: unknown[] })
      }
      const verifyMicros = ((performance.now() - t) * 1000) / (sample.length * BATCH)
      const utf8 = new TextDecoder('utf-8', { fatal: true })
      t = performance.now()
      for (const { body } of sample) JSON.parse(utf8.decode(body))
      const parseMicros = ((performance.now() - t) * 1000) / (sample.length * BATCH)
      t = performance.now()
      const now = Date.now()
      for (const p of payloads) {
        for (const e of p.events) {
          if (!checkEvent(e, now, { futureMs: 90_000, pastMs: 30 * 86_400_000 }).ok) throw new Error('invalid event')
        }
      }
      const validateMicros = ((performance.now() - t) * 1000) / (sample.length * BATCH)
      // The same events through the hub's views and through a fresh engine and memory store
      // (the engine's own cost, which bench/engine.ts measures on its own as well).
      const checked = payloads.flatMap((p) => p.events) as AuthEvent[]
      const views = new HubViews({ users: 10_000, eventsPerUser: 50, alerts: 200 })
      t = performance.now()
      for (const e of checked) views.record(e)
      const viewsMicros = ((performance.now() - t) * 1000) / checked.length
      const store = new MemoryStore()
      const engine = createRiskEngine(
        {
          store,
          points: DEFAULT_POINTS,
          trigger: riskIncrease(),
          halfLifeMs: 7 * 86_400_000,
          maxScore: 100,
          clock: Date.now,
          onAlert: () => {},
        },
        createDiagnostics({ warn: () => {}, error: () => {} }),
      )
      t = performance.now()
      for (const e of checked) {
        const pending = engine.process(e)
        if (pending) await pending
      }
      const engineMicros = ((performance.now() - t) * 1000) / checked.length
      await store.close()
      results.push({
        alg,
        perCore: { median: Math.round(median(perCore)), all: perCore.map(Math.round) },
        wall: { median: Math.round(median(wall)), all: wall.map(Math.round) },
        breakdown: {
          verifyMicrosPerEvent: Math.round(verifyMicros * 100) / 100,
          parseMicrosPerEvent: Math.round(parseMicros * 100) / 100,
          validateMicrosPerEvent: Math.round(validateMicros * 100) / 100,
          viewsMicrosPerEvent: Math.round(viewsMicros * 100) / 100,
          engineMicrosPerEvent: Math.round(engineMicros * 100) / 100,
        },
      })
    } finally {
      await hub.close()
    }
  }

  console.log(
    `| algorithm | events per CPU-second of the hub (median of ${rounds}) | events/s wall | verify + parse µs/event (of which JSON.parse) | validation µs/event | views µs/event | engine µs/event | target |`,
  )
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
  for (const r of results) {
    console.log(
      `| ${r.alg} | ${r.perCore.median.toLocaleString('en')} | ${r.wall.median.toLocaleString('en')} | ${r.breakdown.verifyMicrosPerEvent} (${r.breakdown.parseMicrosPerEvent}) | ${r.breakdown.validateMicrosPerEvent} | ${r.breakdown.viewsMicrosPerEvent} | ${r.breakdown.engineMicrosPerEvent} | >= 50,000 per core ${r.perCore.median >= 50_000 ? 'met' : 'NOT MET'} |`,
    )
  }
  console.log(
    `\n${smoke ? 'smoke' : 'full'} mode, ${args.mix} mix: ${rounds} round(s) of ${perRound} batches x ${BATCH} events per algorithm; Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}; pinned: ${pinned}`,
  )
  const out = {
    benchmark: 'hub',
    mix: args.mix,
    smoke,
    pinned,
    rounds,
    batchesPerRound: perRound,
    batchSize: BATCH,
    results,
    target: 50_000,
  }
  console.log(JSON.stringify(out))
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
  writeFileSync(new URL('./results/hub.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`)
}

/**
 * `--concurrent --baseline <dir>`: two hubs at once on the last CPU, one on another build
 * (`<dir>/index.js`, for example a copy of dist/ made before a change) and one on dist/, each
 * given the same batches at the same moment. The machine's speed drifts by tens of percent
 * within a minute here; two processes sharing one core see the same drift, so the ratio of
 * their CPU time per event in a round resolves a few percent where sequential runs do not
 * (the capture bench's `--concurrent`, for the same reason). `--baseline dist` is the A/A check.
 */
const concurrent = async (): Promise<void> => {
  if (args.baseline === undefined)
    throw new Error('--concurrent needs --baseline <dir> (a build to compare dist/ with)')
  const baseline = new URL('index.js', pathToFileURL(`${resolve(args.baseline)}/`)).href
  const smoke = args.smoke === true
  const rounds = Number(args.rounds ?? (smoke ? 1 : 6))
  const perRound = Number(args.batches ?? (smoke ? 4 : 40))
  const ed = generateKeyPairSync('ed25519')
  const algs = [
    { alg: 'HS256' as const, hubKey: SECRET, signKey: new TextEncoder().encode(SECRET) },
    {
      alg: 'EdDSA' as const,
      hubKey: ed.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      signKey: ed.privateKey,
    },
  ]
  const rows: { alg: string; baseline: number; candidate: number; ratios: number[] }[] = []
  let pinned = 'no'
  let seed = 1
  for (const { alg, hubKey, signKey } of algs) {
    const hubs = [await startHub(hubKey, baseline), await startHub(hubKey)] as const
    // Always pinned: both on the last CPU, sharing it, the load generator on the others.
    pinned = pin(hubs.map((h) => h.pid))
    try {
      const batchesOf = (count: number): AuthEvent[][] => Array.from({ length: count }, () => makeEvents(BATCH, seed++))
      const warm = await signAll(batchesOf(Math.max(2, Math.floor(perRound / 2))), alg, signKey)
      await Promise.all(hubs.map((h) => post(h.url, warm)))
      const perCore: [number[], number[]] = [[], []]
      const ratios: number[] = []
      for (let round = 0; round < rounds; round++) {
        const batches = await signAll(batchesOf(perRound), alg, signKey)
        const before = await Promise.all(hubs.map((h) => h.stats()))
        // Which hub's requests start first alternates between rounds.
        const order = round % 2 === 0 ? [0, 1] : [1, 0]
        await Promise.all(order.map((i) => post((hubs[i] as HubChild).url, batches)))
        const after = await Promise.all(hubs.map((h) => h.stats()))
        const rates = [0, 1].map((i) => {
          const a = after[i] as HubStats
          const b = before[i] as HubStats
          const events = (a.counters['hub.accepted'] ?? 0) - (b.counters['hub.accepted'] ?? 0)
          if (events !== perRound * BATCH) throw new Error(`${events} events accepted, ${perRound * BATCH} sent`)
          return events / ((a.cpuMicros - b.cpuMicros) / 1e6)
        }) as [number, number]
        perCore[0].push(rates[0])
        perCore[1].push(rates[1])
        ratios.push(rates[1] / rates[0])
        process.stderr.write(
          `  ${alg} round ${round + 1}/${rounds}: baseline ${rates[0].toFixed(0)}, candidate ${rates[1].toFixed(0)} events per CPU-second, ratio ${(rates[1] / rates[0]).toFixed(3)}\n`,
        )
      }
      rows.push({ alg, baseline: median(perCore[0]), candidate: median(perCore[1]), ratios })
    } finally {
      await Promise.all(hubs.map((h) => h.close()))
    }
  }
  console.log(
    `| algorithm | baseline events per CPU-second | candidate (dist/) | candidate / baseline, median of ${rounds} rounds (min - max) |`,
  )
  console.log('| --- | ---: | ---: | --- |')
  for (const r of rows) {
    const sorted = [...r.ratios].sort((a, b) => a - b)
    console.log(
      `| ${r.alg} | ${Math.round(r.baseline).toLocaleString('en')} | ${Math.round(r.candidate).toLocaleString('en')} | ${median(r.ratios).toFixed(3)} (${sorted[0]?.toFixed(3)} - ${sorted[sorted.length - 1]?.toFixed(3)}) |`,
    )
  }
  console.log(
    `\nconcurrent, ${args.mix} mix: baseline ${args.baseline}, ${rounds} round(s) of ${perRound} batches x ${BATCH} events per algorithm; pinned: ${pinned}`,
  )
}

if (args.serve) await serve()
else if (args.concurrent) await concurrent()
else await main()
