/**
 * The in-memory store: the shared Store contract, plus what only the embedded
 * store promises: a hard cap on keys with least-recently-written eviction, an
 * incremental sweep of expired keys, a sweep timer that never keeps the process
 * alive, and `close()` releasing everything.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { type HitResult, MemoryStore, type StoreOp } from '../lib/index.js'
import { storeContract } from './store.contract.js'

storeContract('MemoryStore', () => new MemoryStore())

const T0 = 1_700_000_000_000
const HOUR = 3_600_000

const write = (key: string, ttl = HOUR, field = 'hits'): StoreOp => ({
  op: 'hit',
  key,
  field,
  add: true,
  since: 0,
  ttl,
})
const count = async (store: MemoryStore, key: string, now: number, field = 'hits'): Promise<number> => {
  const [result] = await store.run([{ op: 'hit', key, field, add: false, since: 0, ttl: HOUR }], now)
  return (result as HitResult).count
}

/** Resolves with the exit code, or `'running'` if the child is still alive after `ms`. */
const exitWithin = (child: ChildProcess, ms: number): Promise<number | null | 'running'> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve('running'), ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })

describe('MemoryStore (memory-only behaviour)', () => {
  it('never holds more than maxKeys keys, counting evictions', async () => {
    const store = new MemoryStore({ maxKeys: 5 })
    try {
      for (let i = 0; i < 200; i++) {
        await store.run([write(`k${i}`)], T0 + i)
        assert.ok(store.size <= 5, `size ${store.size} above the cap after ${i + 1} keys`)
      }
      assert.equal(store.size, 5)
      assert.equal(store.evicted, 195)
      // The survivors are the five written last.
      for (let i = 195; i < 200; i++) assert.equal(await count(store, `k${i}`, T0 + 300), 1)
      assert.equal(await count(store, 'k194', T0 + 300), 0)
      // The cap is on keys (owners), not fields: a score writing a ledger, a once-mark and
      // two threshold marks, all fields of one key, takes one place; a batch writing several
      // keys is capped too.
      await store.run(
        [
          {
            op: 'score',
            key: 'user',
            field: 'ledger',
            entries: [{ entry: { detection: 'x', points: 50, at: T0 }, once: { field: 'once', ttl: HOUR } }],
            keepSince: 0,
            max: 10,
            ttl: HOUR,
            windowSince: 0,
            thresholds: [
              { level: 10, field: 'alert:10', ttl: HOUR },
              { level: 20, field: 'alert:20', ttl: HOUR },
            ],
          },
        ],
        T0 + 400,
      )
      assert.equal(store.size, 5)
      assert.equal(store.evicted, 196)
      await store.run([write('x1'), write('x2'), write('x3')], T0 + 401)
      assert.equal(store.size, 5)
      assert.equal(store.evicted, 199)
      assert.deepEqual(
        await store.run([{ op: 'marked', key: 'user', field: 'alert:20' }], T0 + 402),
        [true],
        'the key written just before the batch survives it',
      )
    } finally {
      await store.close()
    }
  })

  it('evicts the least recently written key, not the least recently read one', async () => {
    const store = new MemoryStore({ maxKeys: 3 })
    try {
      await store.run([write('a'), write('b'), write('c')], T0)
      // Reading "a" does not protect it; rewriting "b" does.
      assert.equal(await count(store, 'a', T0 + 1), 1)
      await store.run([write('b')], T0 + 2)
      await store.run([write('d')], T0 + 3)
      assert.equal(store.evicted, 1)
      assert.equal(await count(store, 'a', T0 + 4), 0, '"a" (written first, only read since) goes first')
      assert.equal(await count(store, 'b', T0 + 4), 2)
      await store.run([write('e')], T0 + 5)
      assert.equal(await count(store, 'c', T0 + 6), 0, '"c" is now the least recently written')
      assert.equal(await count(store, 'b', T0 + 6), 2)
      assert.equal(await count(store, 'd', T0 + 6), 1)
      assert.equal(await count(store, 'e', T0 + 6), 1)
      assert.equal(store.evicted, 2)
    } finally {
      await store.close()
    }
  })

  it('evicts one key even when every key was written again since it was inserted (second chance)', async () => {
    const store = new MemoryStore({ maxKeys: 3 })
    try {
      await store.run([write('a'), write('b'), write('c')], T0)
      await store.run([write('c'), write('a'), write('b')], T0 + 1)
      await store.run([write('d')], T0 + 2)
      assert.equal(store.size, 3)
      assert.equal(store.evicted, 1)
      assert.equal(await count(store, 'd', T0 + 3), 1, 'the key just written is never the one evicted')
      const survivors = []
      for (const key of ['a', 'b', 'c']) if ((await count(store, key, T0 + 3)) === 2) survivors.push(key)
      assert.equal(survivors.length, 2, `two of a, b, c survive with both hits, got ${survivors.join(', ')}`)
      // The next eviction takes a key not written since eviction last passed over it.
      await store.run([write('e')], T0 + 4)
      assert.equal(store.evicted, 2)
      assert.equal(await count(store, 'd', T0 + 5), 1)
      assert.equal(await count(store, 'e', T0 + 5), 1)
    } finally {
      await store.close()
    }
  })

  it('sweep() cuts windows and ledgers to size without changing what they hold', async () => {
    const store = new MemoryStore()
    const entry = (i: number) => ({ entry: { detection: i % 2 ? 'a' : 'b', points: 1, at: T0 + i } })
    const score = (i: number) =>
      store.run(
        [
          {
            op: 'score',
            key: 'u',
            field: 'ledger',
            entries: [entry(i)],
            keepSince: T0 + i - 10,
            max: 6,
            ttl: HOUR,
            windowSince: 0,
            thresholds: [],
          },
        ],
        T0 + i,
      )
    try {
      for (let i = 0; i < 5; i++) {
        await store.run([write('u', HOUR, 'w')], T0 + i)
        await score(i)
      }
      store.sweep(T0 + 5)
      for (let i = 5; i < 12; i++) {
        await store.run([write('u', HOUR, 'w')], T0 + i)
        await score(i)
        if (i === 8) store.sweep(T0 + i)
      }
      assert.equal(await count(store, 'u', T0 + 12, 'w'), 12)
      const [entries] = await store.run([{ op: 'read', key: 'u', field: 'ledger', since: 0 }], T0 + 12)
      // At most 6 entries, none at or before keepSince (T0 + 1): the last six, oldest first.
      assert.deepEqual(
        (entries as unknown as { at: number }[]).map((e) => e.at - T0),
        [6, 7, 8, 9, 10, 11],
      )
    } finally {
      await store.close()
    }
  })

  it('rejects options that are not whole numbers of at least 1, with a stable code', () => {
    for (const options of [{ maxKeys: 0 }, { maxKeys: 1.5 }, { sweepBatch: -1 }, { sweepInterval: Number.NaN }]) {
      assert.throws(
        () => new MemoryStore(options as never),
        { code: 'ERR_SQREEN_OPTION_TYPE' },
        JSON.stringify(options),
      )
    }
    const tiny = new MemoryStore({ maxKeys: 1 })
    return (async () => {
      try {
        for (let i = 0; i < 20; i++) await tiny.run([write(`k${i}`)], T0 + i)
        assert.equal(tiny.size, 1)
        assert.equal(await count(tiny, 'k19', T0 + 30), 1)
      } finally {
        await tiny.close()
      }
    })()
  })

  it('a key whose every field was reset is gone, not kept until its old expiry', async () => {
    const store = new MemoryStore()
    try {
      await store.run([write('u', HOUR, 'a'), write('u', HOUR, 'b')], T0)
      await store.run([{ op: 'reset', key: 'u', field: 'a' }], T0 + 1)
      store.sweep(T0 + 2)
      assert.equal(store.size, 1, 'one field is left')
      await store.run([{ op: 'reset', key: 'u', field: 'b' }], T0 + 3)
      store.sweep(T0 + 4)
      assert.equal(store.size, 0)
      assert.equal(await count(store, 'u', T0 + 5, 'b'), 0)
    } finally {
      await store.close()
    }
  })

  it('by default it fits the heap: 200,000 failing logins on made-up names in a 128 MB heap evict instead of crashing', () => {
    // An anonymous client makes one key per made-up login. At a fixed 1,000,000 keys (about
    // 1.1 GB) a small container's process ran out of heap and died; the default now follows
    // the heap's limit. The engine scores each failure as the middleware would.
    const dist = (path: string) =>
      JSON.stringify(pathToFileURL(new URL(`../dist/${path}`, import.meta.url).pathname).href)
    const script = `
      const { MemoryStore } = await import(${dist('store/memory.js')})
      const { createRiskEngine } = await import(${dist('risk/engine.js')})
      const { DEFAULT_POINTS } = await import(${dist('risk/points.js')})
      const { riskIncrease } = await import(${dist('risk/trigger.js')})
      const { createDiagnostics } = await import(${dist('diagnostics.js')})
      const store = new MemoryStore()
      const engine = createRiskEngine({ store, points: DEFAULT_POINTS, trigger: riskIncrease(), halfLifeMs: 7 * 86_400_000,
        maxScore: 100, clock: () => Date.now(), onAlert() {} }, createDiagnostics({ warn() {}, error() {} }))
      const t0 = Date.now() - 3_600_000
      for (let i = 0; i < 200_000; i++) {
        const login = 'login:made-up-' + i + '@example.com'
        engine.process({ id: 'e' + i, type: 'login.failed', at: new Date(t0 + i * 10).toISOString(), source: 'passport',
          mode: 'automatic', strategy: 'local', reason: 'invalid_credentials', identity: { login: login.slice(6) },
          userKey: login, loginKey: login, ip: '203.0.113.' + (i % 250), userAgent: 'curl/8.5.0' })
      }
      console.log(JSON.stringify({ maxKeys: store.maxKeys, size: store.size, evicted: store.evicted }))
      await store.close()`
    const out = execFileSync(process.execPath, ['--max-old-space-size=128', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    })
    const { maxKeys, size, evicted } = JSON.parse(out.trim()) as { maxKeys: number; size: number; evicted: number }
    assert.ok(maxKeys >= 10_000 && maxKeys < 60_000, `maxKeys ${maxKeys} for a heap of about 176 MB`)
    assert.ok(size <= maxKeys)
    assert.ok(evicted > 140_000, `${evicted} evicted`)
  })

  it('a ledger keeps no dropped entry alive (its evidence can be collected)', async () => {
    // Collection is forced with --expose-gc, which the suite does not run with: in a child.
    const memory = pathToFileURL(new URL('../dist/store/memory.js', import.meta.url).pathname).href
    const script = `
      const { MemoryStore } = await import(${JSON.stringify(memory)})
      const store = new MemoryStore()
      const score = (at, evidence, keepSince) => store.runSync([{ op: 'score', key: 'u', field: 'ledger',
        entries: evidence ? [{ entry: { detection: 'x', points: 1, at, evidence } }] : [],
        keepSince, max: 100, ttl: 3_600_000, windowSince: 0, thresholds: [] }], at)
      const refs = []
      for (let i = 1; i <= 3; i++) { const ev = { n: i }; refs.push(new WeakRef(ev)); score(i, ev, 0) }
      score(4, undefined, 2.5)
      await new Promise((r) => setTimeout(r, 0)); gc(); await new Promise((r) => setTimeout(r, 0)); gc()
      console.log(JSON.stringify(refs.map((r) => r.deref() !== undefined)))
      await store.close()`
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    })
    assert.deepEqual(JSON.parse(out.trim()), [false, false, true], 'entries 1 and 2 were dropped; only 3 is kept')
  })

  it('sweep() drops expired keys and leaves live ones alone', async () => {
    const store = new MemoryStore()
    try {
      const ops: StoreOp[] = []
      for (let i = 0; i < 10; i++) ops.push(write(`short${i}`, 1_000))
      for (let i = 0; i < 4; i++) ops.push(write(`long${i}`, HOUR))
      ops.push(
        { op: 'claim', key: 'mark', field: 'm', ttl: 1_000 },
        { op: 'claim', key: 'live-mark', field: 'm', ttl: HOUR },
      )
      await store.run(ops, T0)
      assert.equal(store.size, 16)
      store.sweep(T0 + 500)
      assert.equal(store.size, 16, 'nothing has expired yet')
      store.sweep(T0 + 1_001)
      assert.equal(store.size, 5)
      for (let i = 0; i < 4; i++) assert.equal(await count(store, `long${i}`, T0 + 1_002), 1)
      const [stillMarked] = await store.run([{ op: 'marked', key: 'live-mark', field: 'm' }], T0 + 1_002)
      assert.equal(stillMarked, true)
    } finally {
      await store.close()
    }
  })

  it('sweep() keeps a key while one of its fields lives, and drops it with its last field', async () => {
    const store = new MemoryStore()
    try {
      await store.run([write('ip', 1_000, 'logins'), write('ip', HOUR, 'failures')], T0)
      assert.equal(store.size, 1)
      store.sweep(T0 + 2_000)
      assert.equal(store.size, 1, 'the key has a live field')
      assert.equal(await count(store, 'ip', T0 + 2_001, 'failures'), 1)
      assert.equal(await count(store, 'ip', T0 + 2_001, 'logins'), 0)
      store.sweep(T0 + HOUR + 1)
      assert.equal(store.size, 0)
    } finally {
      await store.close()
    }
  })

  it('sweep() is incremental: at most sweepBatch keys examined per call, resuming where it stopped', async () => {
    const store = new MemoryStore({ sweepBatch: 4 })
    try {
      await store.run(
        Array.from({ length: 12 }, (_, i) => write(`k${i}`, 1_000)),
        T0,
      )
      const sizes: number[] = []
      for (let i = 0; i < 4; i++) {
        store.sweep(T0 + 2_000)
        sizes.push(store.size)
      }
      assert.deepEqual(sizes, [8, 4, 0, 0])
    } finally {
      await store.close()
    }
  })

  it("the sweep timer sweeps at the store's time (the newest op's now), not the wall clock: a replayed backlog keeps its live windows", async () => {
    const store = new MemoryStore({ sweepInterval: 5 })
    const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 40))
    try {
      // A hub replaying a forwarder's backlog from two days ago: a window with a day to live.
      const old = Date.now() - 2 * 24 * HOUR
      await store.run([write('ip:backlog', 24 * HOUR)], old)
      await tick()
      await store.run([write('ip:backlog', 24 * HOUR)], old + HOUR)
      await tick()
      // Swept by the wall clock it would be gone: expired two days' worth ago.
      assert.equal(store.size, 1, 'the window the backlog still counts was swept')
      assert.equal(await count(store, 'ip:backlog', old + 2 * HOUR), 2)
      // Time still moves on when no op comes: what expires is freed while the store is idle.
      await store.run([write('ip:short', 20)], old + 3 * HOUR)
      const deadline = Date.now() + 2_000
      while (store.size > 1 && Date.now() < deadline) await tick()
      assert.equal(store.size, 1, 'an idle store still sweeps what has expired since its newest op')
    } finally {
      await store.close()
    }
  })

  it('the sweep clock follows writes only, and never runs ahead of the wall clock', async () => {
    const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 40))
    // A backlog replay, then a read at the wall clock (risk(), the hub's lists): the sweep stays on the backlog's time.
    const replay = new MemoryStore({ sweepInterval: 5 })
    try {
      const old = Date.now() - 2 * 24 * HOUR
      await replay.run([write('ip:backlog', 24 * HOUR)], old)
      await replay.run([{ op: 'read', key: 'id:someone', field: 'ledger', since: 0 }], Date.now())
      await replay.run([{ op: 'marked', key: 'id:someone', field: 'x' }], Date.now())
      await replay.run([{ op: 'hit', key: 'id:someone', field: 'hits', add: false, since: 0, ttl: HOUR }], Date.now())
      await tick()
      assert.equal(replay.size, 1, 'a read at the wall clock swept the window the backlog still counts')
    } finally {
      await replay.close()
    }
    // A write from a sender whose clock runs 90 s fast: a mark with a minute to live stays.
    const skewed = new MemoryStore({ sweepInterval: 5 })
    try {
      const now = Date.now()
      await skewed.run([write('ip:ahead', 1)], now + 90_000)
      await skewed.run([{ op: 'claim', key: 'id:u2', field: 'once:failure_burst', ttl: 60_000 }], now)
      await tick()
      assert.deepEqual(await skewed.run([{ op: 'marked', key: 'id:u2', field: 'once:failure_burst' }], now + 100), [
        true,
      ])
    } finally {
      await skewed.close()
    }
  })

  it('the sweep timer is unref-ed: a process that only creates a store exits by itself', async () => {
    const memory = pathToFileURL(new URL('../lib/store/memory.ts', import.meta.url).pathname).href
    const cwd = new URL('..', import.meta.url).pathname
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        `import(${JSON.stringify(memory)}).then(({ MemoryStore }) => { globalThis.store = new MemoryStore({ sweepInterval: 20 }) })`,
      ],
      { cwd, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    // Control: a process holding a ref-ed interval does not exit, so "exited" below means something.
    const control = spawn(process.execPath, ['-e', 'setInterval(() => {}, 20)'], { stdio: 'ignore' })
    try {
      assert.equal(await exitWithin(child, 10_000), 0, `the child did not exit cleanly: ${stderr}`)
      assert.equal(await exitWithin(control, 200), 'running')
    } finally {
      child.kill()
      control.kill()
    }
  })

  it('close() releases every key', async () => {
    const store = new MemoryStore()
    await store.run(
      [
        write('h'),
        { op: 'claim', key: 'c', field: 'm', ttl: HOUR },
        { op: 'remember', key: 'r', field: 'devices', value: 'v', max: 3, ttl: HOUR },
        {
          op: 'score',
          key: 'l',
          field: 'ledger',
          entries: [{ entry: { detection: 'x', points: 1, at: T0 } }],
          keepSince: 0,
          max: 10,
          ttl: HOUR,
          windowSince: 0,
          thresholds: [],
        },
      ],
      T0,
    )
    assert.equal(store.size, 4)
    await store.close()
    assert.equal(store.size, 0)
    assert.deepEqual(
      await store.run(
        [
          { op: 'read', key: 'l', field: 'ledger', since: 0 },
          { op: 'marked', key: 'c', field: 'm' },
        ],
        T0 + 1,
      ),
      [[], false],
    )
    // Idempotent.
    await store.close()
  })
})
