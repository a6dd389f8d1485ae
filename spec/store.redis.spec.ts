/**
 * The Redis store against a real Redis (`REDIS_URL`, default redis://127.0.0.1:6379):
 * the shared Store contract, plus what only Redis promises, checked with real
 * commands: keys carry the prefix and a TTL, the script survives a SCRIPT FLUSH,
 * no personal data in any key for an advanced-mode app, results identical to the
 * memory store's on a random workload, and `close()` releasing only what it made.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import type { Express, Request, Response } from 'express'
import { Redis } from 'ioredis'
import { Strategy as LocalStrategy } from 'passport-local'
import {
  anonEmail,
  type HitResult,
  MemoryStore,
  RedisStore,
  RedisStoreUnavailableError,
  SqreenAuthError,
  type Store,
  type StoreOp,
  type StoreResult,
} from '../lib/index.js'
import { harness, variants } from './helpers/apps.js'
import { failLogins, login, USERS, userByLogin } from './helpers/receivers.js'
import { dropKeys, inspector, keysUnder, REDIS_URL, RedisServer, testPrefix } from './helpers/redis.js'
import { storeContract } from './store.contract.js'

const HOUR = 3_600_000
const root = new URL('..', import.meta.url).pathname
const redisModule = pathToFileURL(new URL('../lib/store/redis.ts', import.meta.url).pathname).href

/** Resolves with the exit code, or `'running'` if the child is still alive after `ms`. */
const exitWithin = (child: ChildProcess, ms: number): Promise<number | null | 'running'> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode)
    const timer = setTimeout(() => resolve('running'), ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })

let admin: Redis
before(async () => {
  admin = await inspector()
})
after(async () => {
  await admin?.quit()
})

// Each store gets its own prefix, and its keys are deleted after each test: the contract
// suite moves `now` hours ahead with TTLs of up to 30 days, which must not pile up.
const prefixes = new WeakMap<Store, string>()
storeContract(
  'RedisStore',
  () => {
    const prefix = testPrefix('contract')
    const store = new RedisStore({ url: REDIS_URL, prefix })
    prefixes.set(store, prefix)
    return store
  },
  async (store) => {
    const prefix = prefixes.get(store)
    await store.close()
    if (prefix) await dropKeys(admin, prefix)
  },
)

/** A store on its own prefix, closed and cleaned after `fn`. */
const withStore = async (fn: (store: RedisStore, prefix: string) => Promise<void>): Promise<void> => {
  const prefix = testPrefix('redis')
  const store = new RedisStore({ url: REDIS_URL, prefix })
  try {
    await fn(store, prefix)
  } finally {
    await store.close()
    await dropKeys(admin, prefix)
  }
}

describe('RedisStore (Redis-only behaviour)', () => {
  it("keys are <prefix>{<key>} (the owner's record) and <prefix>{<key>}:<field> (a ledger), each with a TTL from the op ttls", async () => {
    await withStore(async (store, prefix) => {
      const now = Date.now()
      await store.run(
        [
          { op: 'hit', key: 'ip:198.51.100.0/24', field: 'logins', add: true, since: 0, ttl: 10 * 60_000, member: 'x' },
          { op: 'claim', key: 'id:42', field: 'once:brute_force', ttl: HOUR },
          { op: 'remember', key: 'id:42', field: 'devices', value: 'Firefox on Linux', max: 20, ttl: 90 * 24 * HOUR },
          {
            op: 'score',
            key: 'id:42',
            field: 'ledger',
            entries: [{ entry: { detection: 'x', points: 30, at: now } }],
            keepSince: 0,
            max: 10,
            ttl: 30 * 24 * HOUR,
            windowSince: now - HOUR,
            thresholds: [{ level: 10, field: 'alert:10', ttl: 24 * HOUR }],
          },
        ],
        now,
      )
      const keys = (await keysUnder(admin, prefix)).sort()
      assert.deepEqual(keys, [`${prefix}{id:42}`, `${prefix}{id:42}:ledger`, `${prefix}{ip:198.51.100.0/24}`])
      // Within a second of the expected TTL (set from `now`, a few ms ago), never below it.
      const ttlNear = async (key: string, want: number): Promise<void> => {
        const ttl = await admin.pttl(key)
        assert.ok(ttl > want - 1000 && ttl <= want + 1000, `${key}: PTTL ${ttl}, expected about ${want}`)
      }
      // A record lives as long as its longest-lived field (here the devices list).
      await ttlNear(`${prefix}{id:42}`, 90 * 24 * HOUR)
      await ttlNear(`${prefix}{id:42}:ledger`, 30 * 24 * HOUR)
      await ttlNear(`${prefix}{ip:198.51.100.0/24}`, 10 * 60_000)
      // Forget the devices: the record's TTL is not shortened (a TTL is only the garbage
      // collector, and another writer's clock may count on it: see below); reads go by the
      // fields' own expiries.
      await store.run([{ op: 'reset', key: 'id:42', field: 'devices' }], now + 1)
      await ttlNear(`${prefix}{id:42}`, 90 * 24 * HOUR)
      assert.deepEqual(
        await store.run(
          [
            { op: 'marked', key: 'id:42', field: 'alert:10' },
            { op: 'marked', key: 'id:42', field: 'once:brute_force' },
          ],
          now + 2,
        ),
        [true, true],
      )
      // Reset every field: the record goes, and so does the ledger.
      await store.run(
        [
          { op: 'reset', key: 'id:42', field: 'alert:10' },
          { op: 'reset', key: 'id:42', field: 'once:brute_force' },
          { op: 'reset', key: 'id:42', field: 'ledger' },
        ],
        now + 3,
      )
      assert.deepEqual(await keysUnder(admin, prefix), [`${prefix}{ip:198.51.100.0/24}`])
    })
  })

  it('a devices list in the earlier layout (distinct values) is read as one write each, then kept as runs', async () => {
    await withStore(async (store, prefix) => {
      const now = Date.now()
      // Kind 3, as written before runs: most recent first, distinct values.
      await admin.eval(
        "redis.call('SET', KEYS[1], cmsgpack.pack({devices = {tonumber(ARGV[1]), 3, 'b', 'a'}}))",
        1,
        `${prefix}{id:7}`,
        String(now + HOUR),
      )
      const remember = (value: string, at: number) =>
        store.run([{ op: 'remember', key: 'id:7', field: 'devices', value, max: 3, ttl: HOUR }], at)
      assert.deepEqual(await remember('a', now + 1), [{ seen: true, size: 2 }]) // a b a
      assert.deepEqual(await remember('c', now + 2), [{ seen: false, size: 3 }]) // c a b
      assert.deepEqual(await remember('b', now + 3), [{ seen: true, size: 3 }]) // b c a
      const raw = await admin.eval(
        "local v = cmsgpack.unpack(redis.call('GET', KEYS[1])).devices return {v[2], v[3], v[4], v[5], v[6], v[7], v[8]}",
        1,
        `${prefix}{id:7}`,
      )
      assert.deepEqual(raw, [4, 'b', 1, 'c', 1, 'a', 1])
    })
  })

  it('the Redis TTL never ends a value before its logical expiry, whichever clock is ahead', async () => {
    await withStore(async (store, prefix) => {
      // A caller clock an hour behind the server's (a frozen test clock, a skewed host).
      const behind = Date.now() - HOUR
      await store.run([{ op: 'claim', key: 'u', field: 'm', ttl: 60_000 }], behind)
      const ttl = await admin.pttl(`${prefix}{u}`)
      assert.ok(ttl > 59_000 && ttl <= 61_000, `PTTL ${ttl}`)
      assert.deepEqual(await store.run([{ op: 'marked', key: 'u', field: 'm' }], behind + 30_000), [true])
      assert.deepEqual(await store.run([{ op: 'marked', key: 'u', field: 'm' }], behind + 60_001), [false])
      // A caller clock ahead: the key lives until the caller's now + ttl.
      const ahead = Date.now() + HOUR
      await store.run([{ op: 'claim', key: 'v', field: 'm', ttl: 60_000 }], ahead)
      const ttlAhead = await admin.pttl(`${prefix}{v}`)
      assert.ok(ttlAhead > HOUR + 59_000 && ttlAhead <= HOUR + 61_000, `PTTL ${ttlAhead}`)
    })
  })

  it('a writer whose clock is ahead never shortens the expiry another writer set (no mark claimed twice in its window)', async () => {
    await withStore(async (store, prefix) => {
      // A: a minute behind the server (a skewed host; a hub scoring a backlog at the events'
      // times), claims a 90 s mark: A counts on it until the server's now + 90 s.
      const behind = Date.now() - 60_000
      assert.deepEqual(await store.run([{ op: 'claim', key: 'w', field: 'm', ttl: 90_000 }], behind), [true])
      const before = await admin.pttl(`${prefix}{w}`)
      assert.ok(before > 88_000, `PTTL ${before}`)
      // B: in step with the server, writes a 1 s field of the same owner. The record's latest
      // logical expiry is A's (server + 30 s on B's clock): set by B alone, the key would go
      // in 30 s, and A would claim its mark again a minute early.
      await store.run([{ op: 'claim', key: 'w', field: 'n', ttl: 1_000 }], Date.now())
      const after = await admin.pttl(`${prefix}{w}`)
      assert.ok(after > before - 2_000, `PTTL went from ${before} to ${after}`)
      // The same for a ledger (its own key).
      const entry = { detection: 'wrong_password', points: 1, at: behind }
      await store.run(
        [
          {
            op: 'score',
            key: 'w',
            field: 'ledger',
            entries: [{ entry }],
            keepSince: 0,
            max: 10,
            ttl: 90_000,
            windowSince: 0,
            thresholds: [],
          },
        ],
        behind,
      )
      const ledgerKey = (await admin.keys(`${prefix}*ledger*`))[0] ?? `${prefix}{w}:ledger`
      const ledgerBefore = await admin.pttl(ledgerKey)
      await store.run(
        [
          {
            op: 'score',
            key: 'w',
            field: 'ledger',
            entries: [],
            keepSince: 0,
            max: 10,
            ttl: 1_000,
            windowSince: 0,
            thresholds: [],
          },
        ],
        Date.now(),
      )
      const ledgerAfter = await admin.pttl(ledgerKey)
      assert.ok(
        ledgerBefore > 88_000 && ledgerAfter > ledgerBefore - 2_000,
        `ledger PTTL ${ledgerBefore} -> ${ledgerAfter}`,
      )
    })
  })

  it('survives SCRIPT FLUSH mid-run: NOSCRIPT loads the script once and no batch is lost or applied twice', async () => {
    // A server of its own: flushing the shared server's scripts would disturb other users of it.
    const server = await RedisServer.start()
    const own = await inspector(server.url)
    const store = new RedisStore({ url: server.url })
    try {
      const hit: StoreOp = { op: 'hit', key: 'h', field: 'hits', add: true, since: 0, ttl: HOUR }
      const now = Date.now()
      // A fresh server has no script: the first batch meets NOSCRIPT too.
      for (let i = 0; i < 5; i++) await store.run([hit], now + i)
      assert.equal(store.stats().scriptLoads, 1)
      // EVALSHA, not EVAL, from then on: the script travels once per load.
      await own.config('RESETSTAT')
      await store.run([hit], now + 5)
      const stats = String(await own.info('commandstats'))
      assert.match(stats, /cmdstat_evalsha:calls=1,/)
      assert.doesNotMatch(stats, /cmdstat_eval:/)

      await own.script('FLUSH')
      // Many batches in flight at once, all meeting NOSCRIPT together: one SCRIPT LOAD for all.
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => store.run([hit], now + 10 + i) as Promise<HitResult[]>),
      )
      assert.deepEqual(
        results.map(([r]) => (r as HitResult).count).sort((a, b) => a - b),
        Array.from({ length: 50 }, (_, i) => 7 + i),
      )
      assert.equal(store.stats().scriptLoads, 2)
      await own.script('FLUSH')
      const [last] = (await store.run([hit], now + 100)) as HitResult[]
      assert.equal(last?.count, 57)
      assert.deepEqual(
        { scriptLoads: store.stats().scriptLoads, failed: store.stats().failed },
        { scriptLoads: 3, failed: 0 },
      )
    } finally {
      await store.close()
      own.disconnect()
      await server.stop()
    }
  })

  for (const late of [false, true]) {
    it(`answers exactly what the memory store answers on a random workload (same batches, same clock, several per call)${late ? ', time sometimes going back (late events)' : ''}`, async () => {
      await withStore(async (redis) => {
        const memory = new MemoryStore()
        try {
          let seed = 42
          const rand = (n: number): number => {
            seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff
            return seed % n
          }
          const T0 = Date.now()
          let now = T0
          const keys = ['a', 'b', 'ip:1']
          const fields = ['f1', 'f2', 'f3']
          const opFor = (): StoreOp => {
            const key = keys[rand(keys.length)] as string
            const field = fields[rand(fields.length)] as string
            switch (rand(8)) {
              case 0:
              case 1:
                return {
                  op: 'hit',
                  key,
                  field,
                  add: rand(3) !== 0,
                  since: now - rand(5) * 60_000,
                  ttl: (1 + rand(3)) * 10 * 60_000,
                  ...(rand(2) === 0 ? { member: `m${rand(20)}` } : {}),
                }
              case 2:
                return { op: 'claim', key, field: `mark${rand(3)}`, ttl: (1 + rand(3)) * 60_000 }
              case 3:
                return { op: 'marked', key, field: `mark${rand(3)}` }
              case 4:
                return { op: 'remember', key, field: 'recent', value: `v${rand(6)}`, max: 3, ttl: 20 * 60_000 }
              case 5:
                return {
                  op: 'score',
                  key,
                  field: 'ledger',
                  entries: Array.from({ length: rand(3) }, (_, i) => ({
                    entry: {
                      detection: `d${rand(4)}`,
                      points: [1, 2.5, 0.1, 0.2, 15][rand(5)] as number,
                      at: now - rand(3) * 60_000,
                      ...(rand(2) === 0 ? { evidence: { i, ip: '192.0.2.0/24' } } : {}),
                    },
                    ...(rand(3) === 0 ? { once: { field: `once${rand(2)}`, ttl: 5 * 60_000 } } : {}),
                  })),
                  keepSince: now - 30 * 60_000,
                  max: 8,
                  ttl: 60 * 60_000,
                  windowSince: now - 20 * 60_000,
                  thresholds: [
                    { level: 3, field: 'alert:3', ttl: 10 * 60_000 },
                    { level: 6, field: 'alert:6', ttl: 10 * 60_000 },
                  ],
                }
              case 6:
                // A window, a mark or a ledger (same field names on both sides), or a kind that does not move.
                return {
                  op: 'move',
                  key,
                  // From the high bits: an LCG's low bits cycle (seed % 8 has period 8), so after
                  // case 6, `rand(4)` always answered 0 and moves only ever named a window.
                  field: [field, `mark${rand(3)}`, 'recent', 'ledger'][
                    Math.floor(rand(0x40000000) / 0x10000000)
                  ] as string,
                  to: keys[rand(keys.length)] as string,
                }
              default:
                return rand(4) === 0
                  ? { op: 'reset', key, field: rand(2) === 0 ? 'ledger' : field }
                  : { op: 'read', key, field: 'ledger', since: now - rand(40) * 60_000 }
            }
          }
          for (let i = 0; i < 300; i++) {
            // Up to four batches issued at once (the store sends them in one script call, in
            // order), each at its own time; the memory store runs the same batches one by one.
            const group = Array.from({ length: 1 + rand(4) }, () => {
              now += late && rand(4) === 0 ? -rand(6) * 30_000 : rand(4) * 30_000
              return { now, ops: Array.from({ length: 1 + rand(5) }, opFor) }
            })
            const fromRedis = await Promise.all(group.map((b) => redis.run(b.ops, b.now)))
            const fromMemory: StoreResult[][] = []
            for (const b of group) fromMemory.push(await memory.run(b.ops, b.now))
            assert.deepEqual(fromRedis, fromMemory, `group ${i}: ${JSON.stringify(group)}`)
          }
        } finally {
          await memory.close()
        }
      })
    })
  }

  it('answers what the memory store answers when hits arrive out of time order (late events scored with their own time)', async () => {
    await withStore(async (redis) => {
      const memory = new MemoryStore()
      try {
        const T = Date.now()
        const hit = (at: number, since = at - 100): [StoreOp[], number] => [
          [{ op: 'hit', key: 'u', field: 'w', add: true, since, ttl: 100 }],
          at,
        ]
        // One hit, 140 older ones after it, then newer ones: the window's times are not sorted,
        // and the memory store keeps more of them (up to twice WINDOW_CAP) than Redis does.
        const steps = [
          hit(T + 1000),
          ...Array.from({ length: 140 }, () => hit(T + 990)),
          hit(T + 1000),
          hit(T + 1095, T + 995),
        ]
        for (const [ops, now] of steps) {
          const [fromRedis, fromMemory] = [await redis.run(ops, now), await memory.run(ops, now)]
          assert.deepEqual(fromRedis, fromMemory, `at T+${now - T}`)
        }
        const read: StoreOp[] = [{ op: 'hit', key: 'u', field: 'w', add: false, since: T + 995, ttl: 100 }]
        assert.deepEqual(await redis.run(read, T + 1096), await memory.run(read, T + 1096))
      } finally {
        await memory.close()
      }
    })
  })

  it('no personal data in any key: an advanced-mode app with e-mail logins, attacked and logged into', async () => {
    const prefix = testPrefix('pii')
    const store = new RedisStore({ url: REDIS_URL, prefix })
    const variant = variants[0]!
    const secret = 'redis-pii-spec-secret-0123456789'
    const h = harness(
      variant,
      ({ app, passport }) => {
        app.set('trust proxy', true)
        passport.use(
          new LocalStrategy({ usernameField: 'username' }, (name, password, done) => {
            const user = userByLogin(name)
            done(null, user && user.password === password ? user : false)
          }),
        )
        app.post('/login', passport.authenticate('local', { session: false }), (req: Request, res: Response) => {
          res.json({ ok: true, id: (req.user as { id: number }).id })
        })
      },
      {
        mode: 'advanced',
        secret,
        identify: (user: (typeof USERS)[number]) => ({ id: user.id, email: anonEmail(user.id, user.email) }),
        store,
      },
    )
    try {
      const app = h.app as Express
      for (const user of USERS) {
        // A brute force by e-mail, from two IPs, then the right password; an unknown e-mail too.
        await failLogins(app, user.email, 12, { ip: '203.0.113.7' })
        await failLogins(app, user.username, 3, { ip: '198.51.100.20' })
        assert.equal((await login(app, user.email, user.password, { ip: '203.0.113.7' })).status, 200)
      }
      await failLogins(app, 'nobody.private@example.org', 3, { ip: '203.0.113.8' })
      await h.sqreen.close()
      assert.equal(h.sqreen.stats().counters.store_errors, undefined, JSON.stringify(h.logger.lines))
      const keys = await keysUnder(admin, prefix)
      assert.ok(keys.length > 10, `only ${keys.length} keys were written`)
      assert.ok(keys.some((k) => k.includes('{id:1}:ledger')))
      assert.equal(keys.filter((k) => k.includes('{ip:~')).length, 3, `one key per client address: ${keys.join(' ')}`)
      const forbidden = [
        ...USERS.flatMap((u) => [u.email, u.username, u.email.split('@')[0] as string, u.password]),
        'nobody.private@example.org',
        'nobody.private',
        // Client addresses: the IP keys are keyed hashes in advanced mode.
        '203.0.113.7',
        '198.51.100.20',
        '203.0.113.8',
      ].map((s) => s.toLowerCase())
      for (const key of keys) {
        for (const word of forbidden) assert.ok(!key.toLowerCase().includes(word), `key ${key} contains ${word}`)
        assert.ok(!key.includes('@'), `key ${key} contains an @`)
      }
      // Nor in the values: members are hashes, ledgers carry detections and truncated IPs.
      for (const key of keys) {
        const value = (await admin.getBuffer(key))?.toString('latin1') ?? ''
        for (const word of forbidden) assert.ok(!value.toLowerCase().includes(word), `value of ${key} contains ${word}`)
      }
    } finally {
      await h.sqreen.close()
      await store.close()
      await dropKeys(admin, prefix)
    }
  })

  it('close() releases the connection it created, and leaves a client passed in open', async () => {
    const name = `sqreen-close-${Date.now()}`
    const connected = async (): Promise<number> =>
      String(await admin.call('CLIENT', 'LIST'))
        .split('\n')
        .filter((line) => line.includes(`name=${name}`)).length

    // Its own client: a process that only creates a store, runs a batch and closes it exits
    // by itself (no socket or timer left); the same process without close() keeps running.
    const child = (close: boolean) =>
      spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          '-e',
          `import(${JSON.stringify(redisModule)}).then(async ({ RedisStore }) => {
            const store = new RedisStore({ url: ${JSON.stringify(REDIS_URL)}, prefix: ${JSON.stringify(testPrefix('close'))} })
            const [marked] = await store.run([{ op: 'marked', key: 'k', field: 'f' }], Date.now())
            if (marked !== false) process.exit(3)
            ${close ? 'await store.close()' : ''}
          })`,
        ],
        { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
      )
    const closing = child(true)
    const leaving = child(false)
    let stderr = ''
    closing.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    try {
      assert.equal(await exitWithin(closing, 10_000), 0, `the child did not exit cleanly: ${stderr}`)
      assert.equal(await exitWithin(leaving, 300), 'running', 'control: an open store keeps its process alive')
    } finally {
      closing.kill()
      leaving.kill()
    }

    const own = new RedisStore({ url: REDIS_URL, prefix: testPrefix('close') })
    await own.run([{ op: 'marked', key: 'k', field: 'f' }], Date.now())
    await own.close()
    assert.equal(own.stats().state, 'closed')
    await assert.rejects(own.run([{ op: 'marked', key: 'k', field: 'f' }], Date.now()), (err: unknown) => {
      // One error class for the package: a SqreenAuthError with its stable code.
      assert.ok(err instanceof SqreenAuthError)
      assert.ok(err instanceof RedisStoreUnavailableError)
      assert.equal(err.code, 'ERR_SQREEN_REDIS_UNAVAILABLE')
      return true
    })
    await own.close() // idempotent

    // A client passed in stays connected and usable, with no listener of ours left on it.
    const client = new Redis(REDIS_URL, { connectionName: name })
    try {
      const listeners = (): number => client.listenerCount('error') + client.listenerCount('close')
      const baseline = listeners()
      const prefix = testPrefix('close')
      const store = new RedisStore({ client, prefix })
      assert.deepEqual(await store.run([{ op: 'claim', key: 'k', field: 'f', ttl: 60_000 }], Date.now()), [true])
      await store.close()
      assert.equal(client.status, 'ready')
      assert.equal(await connected(), 1)
      assert.equal(await client.ping(), 'PONG')
      assert.equal(listeners(), baseline)
      await dropKeys(admin, prefix)
    } finally {
      client.disconnect()
    }
  })

  it('rejects bad options at construction with a stable code', () => {
    const code = (fn: () => unknown, expected: string, message?: RegExp): void => {
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof SqreenAuthError, String(err))
        assert.equal(err.code, expected)
        if (message) assert.match(err.message, message)
        return true
      })
    }
    code(() => new RedisStore({ prefx: 'x' } as never), 'ERR_SQREEN_UNKNOWN_OPTION', /Did you mean "prefix"\?/)
    code(() => new RedisStore({ url: 'http://127.0.0.1:6379' }), 'ERR_SQREEN_URL')
    code(() => new RedisStore({ timeout: 0 }), 'ERR_SQREEN_OPTION_TYPE')
    code(() => new RedisStore({ client: {} as never }), 'ERR_SQREEN_OPTION_TYPE')
    code(() => new RedisStore({ prefix: 3 as never }), 'ERR_SQREEN_OPTION_TYPE')
    code(() => new RedisStore({ prefix: 'a{b}:' }), 'ERR_SQREEN_OPTION_TYPE', /must not contain \{ or \}/)
    const clusterLike = { isCluster: true, status: 'ready', evalsha: () => {}, on: () => {} }
    code(() => new RedisStore({ client: clusterLike as never }), 'ERR_SQREEN_OPTION_TYPE', /Cluster is not supported/)
    const client = new Redis(REDIS_URL, { lazyConnect: true })
    code(() => new RedisStore({ client, url: REDIS_URL }), 'ERR_SQREEN_OPTION_TYPE', /either "client"/)
  })
})
