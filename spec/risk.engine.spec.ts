/**
 * The risk engine's two ways of running a batch give the same answers. With the
 * memory store it runs each operation at once through reused operation objects
 * (`DirectOps`); with any other store it builds `StoreOp` batches for `run()`
 * (`OpList`), as the Redis store needs. One generated stream of events (attacks,
 * typos, logins under a pseudonymous login key, new devices, disposable
 * e-mails, IPv4 and IPv6, time moving by seconds to days) is scored by:
 *
 * - the engine on a MemoryStore (the direct path),
 * - the engine on a MemoryStore seen only through `run()` (the batch path),
 * - the engine on a real RedisStore (the batch path, one script per batch),
 *
 * and the alerts, the scores reported for enforcement, every user's risk and the
 * counters must be identical. The stream is checked to reach every detection, so
 * an equality of empty results cannot pass.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { AuthEvent } from '../lib/event.js'
import {
  anonEmail,
  MemoryStore,
  RedisStore,
  type RiskAlert,
  type Store,
  type StoreOp,
  type StoreResult,
} from '../lib/index.js'
import { DirectOps } from '../lib/risk/batch.js'
import { createRiskEngine, type RiskEngine } from '../lib/risk/engine.js'
import { DEFAULT_POINTS } from '../lib/risk/points.js'
import { riskIncrease } from '../lib/risk/trigger.js'
import { dropKeys, inspector, REDIS_URL, testPrefix } from './helpers/redis.js'

const T0 = Date.UTC(2030, 2, 4, 8, 0, 0)
const MINUTE = 60_000

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
const random = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'curl/8.5.0',
]
const IPS = ['203.0.113.7', '203.0.113.8', '198.51.100.9', '192.0.2.1', '2001:db8:1:2::5', '2001:db8:1:2ff::6', null]
const DOMAINS = ['example.com', 'mailinator.com', 'duck.com']

/** Twelve users attacked and logging in over a few simulated days. */
const stream = (seed: number, count: number): AuthEvent[] => {
  const next = random(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T
  const events: AuthEvent[] = []
  let now = T0
  for (let i = 0; i < count; i++) {
    // Mostly seconds apart (bursts, stuffing runs), sometimes hours or a day (windows end).
    const r = next()
    now += r < 0.9 ? Math.floor(next() * 6_000) : r < 0.995 ? Math.floor(next() * 60 * MINUTE) : 26 * 60 * MINUTE
    const user = Math.floor(next() * 12)
    const email = anonEmail(user, `user${user}@${DOMAINS[user % DOMAINS.length]}`)
    const base = {
      id: `e${i}`,
      at: new Date(now).toISOString(),
      source: 'passport' as const,
      mode: 'advanced' as const,
      strategy: 'local',
      ip: pick(IPS),
      userAgent: pick(UAS),
    }
    const kind = next()
    if (kind < 0.02) {
      // A brute-force run: eleven wrong passwords from one IP, then often the right one.
      const ip = pick(IPS.slice(0, 4))
      for (let k = 0; k < 11; k++) {
        now += 3_000
        events.push({
          ...base,
          id: `e${i}-${k}`,
          at: new Date(now).toISOString(),
          ip,
          type: 'login.failed',
          reason: 'invalid_credentials',
          identity: { id: user, email },
          userKey: `id:${user}`,
          loginKey: `login:${user}`,
        })
      }
      if (next() < 0.7) {
        now += 3_000
        events.push({
          ...base,
          id: `e${i}-ok`,
          at: new Date(now).toISOString(),
          ip,
          type: 'login.succeeded',
          identity: { id: user, email },
          userKey: `id:${user}`,
          loginKey: `login:${user}`,
        })
      }
    } else if (kind < 0.55) {
      // A failure is known by its login's key only, unless the app maps it to the user.
      const known = next() < 0.5
      events.push({
        ...base,
        type: 'login.failed',
        reason: next() < 0.9 ? 'invalid_credentials' : 'missing_credentials',
        identity: known ? { id: user, email } : {},
        userKey: known ? `id:${user}` : `login:${user}`,
        loginKey: `login:${user}`,
      })
    } else if (kind < 0.85) {
      events.push({
        ...base,
        type: 'login.succeeded',
        identity: { id: user, email },
        userKey: `id:${user}`,
        loginKey: `login:${user}`,
      })
    } else if (kind < 0.95) {
      events.push({
        ...base,
        type: 'custom',
        strategy: null,
        source: 'sdk',
        name: 'sql_injection',
        severity: pick(['low', 'medium', 'high', 'critical'] as const),
        identity: { id: user },
        userKey: `id:${user}`,
      })
    } else {
      events.push({ ...base, type: 'signup', identity: { id: user, email }, userKey: `id:${user}` })
    }
  }
  return events
}

interface Outcome {
  alerts: string[]
  scores: string[]
  risks: string[]
  counters: Record<string, number>
}

/** Diagnostics that fail the test on any engine error. */
const quietDiagnostics = () => createDiagnostics({ warn: () => {}, error: (m) => assert.fail(`engine error: ${m}`) })

/** An engine as the middleware builds one: default points, a week's half-life, the clock frozen at T0. */
const engineOn = (
  store: Store,
  listeners: Pick<Parameters<typeof createRiskEngine>[0], 'onAlert' | 'onScore'>,
  trigger = riskIncrease(),
  diag = quietDiagnostics(),
): RiskEngine =>
  createRiskEngine(
    {
      store,
      points: DEFAULT_POINTS,
      trigger,
      halfLifeMs: 7 * 24 * 60 * MINUTE,
      maxScore: 100,
      clock: () => T0,
      ...listeners,
    },
    diag,
  )

/** Scores `events` in order on an engine over `store`; what it reported and every user's risk after. */
const score = async (store: Store, events: readonly AuthEvent[]): Promise<Outcome> => {
  const alerts: string[] = []
  const scores: string[] = []
  const diag = quietDiagnostics()
  const engine = engineOn(
    store,
    {
      onAlert: (alert: RiskAlert) => alerts.push(JSON.stringify({ ...alert, id: '' })),
      onScore: (userKey, value) => scores.push(`${userKey}=${value}`),
    },
    riskIncrease({ escalate: [30, 60] }),
    diag,
  )
  for (const event of events) await engine.process(event)
  const risks: string[] = []
  for (let user = 0; user < 12; user++) {
    for (const key of [`id:${user}`, `login:${user}`]) risks.push(JSON.stringify(await engine.risk(key)))
  }
  const { counters } = diag.snapshot()
  return { alerts, scores, risks, counters: { ...counters } }
}

/** The memory store seen only through the `Store` contract: the engine cannot take its direct path. */
const runOnly = (inner: MemoryStore): Store => ({ run: (ops, now) => inner.run(ops, now), close: () => inner.close() })

let admin: Redis
before(async () => {
  admin = await inspector()
})
after(async () => {
  await admin?.quit()
})

describe('risk engine: the direct path and the batch path agree', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: memory (direct), memory through run() and Redis give the same alerts, scores and risks`, async () => {
      const events = stream(seed, 1_500)
      const direct = await score(new MemoryStore(), events)
      const batched = await score(runOnly(new MemoryStore()), events)
      const prefix = testPrefix('engine-paths')
      const redis = new RedisStore({ url: REDIS_URL, prefix })
      let viaRedis: Outcome
      try {
        viaRedis = await score(redis, events)
      } finally {
        await redis.close()
        await dropKeys(admin, prefix)
      }

      // The stream reaches every detection and alerts, so equal answers mean something.
      const detections = new Set(
        direct.risks.flatMap((r) =>
          (JSON.parse(r) as { entries: { detection: string }[] }).entries.map((e) => e.detection),
        ),
      )
      for (const d of Object.keys(DEFAULT_POINTS)) assert.ok(detections.has(d), `the stream never produced ${d}`)
      assert.ok(direct.alerts.length >= 5, `only ${direct.alerts.length} alerts`)

      assert.deepEqual(batched.alerts, direct.alerts)
      assert.deepEqual(batched.scores, direct.scores)
      assert.deepEqual(batched.risks, direct.risks)
      assert.deepEqual(batched.counters, direct.counters)
      assert.deepEqual(viaRedis.alerts, direct.alerts)
      assert.deepEqual(viaRedis.scores, direct.scores)
      assert.deepEqual(viaRedis.risks, direct.risks)
      assert.deepEqual(viaRedis.counters, direct.counters)
    })
  }

  it('a listener that scores another event from inside onAlert gets the same result on both paths', async () => {
    const run = async (store: Store): Promise<string[]> => {
      const pending: Promise<void>[] = []
      const engine: RiskEngine = engineOn(store, {
        // An alert for user N makes the app report an attack on user N + 100, at once.
        onAlert: (alert) => {
          const alerted = Number(alert.userKey.slice(3))
          if (alerted >= 100) return // the echo's own alert echoes nothing
          const id = alerted + 100
          const echo = engine.process({
            id: `echo-${alert.userKey}`,
            type: 'custom',
            at: new Date(T0 + 1).toISOString(),
            source: 'sdk',
            mode: 'advanced',
            strategy: null,
            name: 'echo',
            severity: 'critical',
            identity: { id },
            userKey: `id:${id}`,
            ip: null,
            userAgent: null,
          })
          if (echo) pending.push(echo)
        },
      })
      for (const event of stream(9, 400)) await engine.process(event)
      await Promise.all(pending)
      const risks: string[] = []
      for (let user = 0; user < 12; user++) {
        risks.push(JSON.stringify(await engine.risk(`id:${user}`)))
        risks.push(JSON.stringify(await engine.risk(`id:${user + 100}`)))
      }
      return risks
    }
    const direct = await run(new MemoryStore())
    const batched = await run(runOnly(new MemoryStore()))
    assert.ok(
      direct.some((r) => r.includes('"attack_critical"') && r.includes('id:1')),
      'some echo was scored',
    )
    assert.deepEqual(direct, batched)
  })

  describe('an expired alert is raised again by an event whose only detection is one the user already holds', () => {
    // In each case: at t=0 a critical attack alerts (the alert window closes for 24 h); later
    // a detection fires and marks the user for its window, adding enough points for another
    // alert that the closed window holds back; a day and a minute after the first alert, one
    // more event whose only candidate is that detection, its mark still held (and a wrong
    // password over the daily cap). Nothing new is added, yet the risk rose by more than 10
    // in the last 24 hours and the window has closed: the team must be told again.
    const HOUR = 60 * MINUTE
    const LATE = 24 * HOUR + MINUTE
    const at = (ms: number): string => new Date(T0 + ms).toISOString()
    const X = '203.0.113.7'
    let n = 0
    const ev = (type: AuthEvent['type'], ms: number, more: Partial<AuthEvent> = {}): AuthEvent =>
      ({
        id: `h${n++}`,
        type,
        at: at(ms),
        source: 'passport',
        mode: 'advanced',
        strategy: 'local',
        identity: { id: 1 },
        userKey: 'id:1',
        ip: X,
        userAgent: UAS[0] as string,
        ...(type === 'login.failed' ? { reason: 'invalid_credentials' as const } : {}),
        ...more,
      }) as AuthEvent
    const alerted = ev('custom', 0, { source: 'sdk', strategy: null, name: 'probe', severity: 'critical' })
    /** Five logins (not user 1's) failing from X within a minute: X becomes a stuffing source. */
    const flagX = (ms: number): AuthEvent[] =>
      ['a', 'b', 'c', 'd', 'e'].map((login, k) =>
        ev('login.failed', ms + k * 1_000, {
          identity: { login },
          userKey: `login:${login}`,
          loginKey: `login:${login}`,
        }),
      )
    const failures = (count: number, ms: number, ips: readonly string[] = [X]): AuthEvent[] =>
      Array.from({ length: count }, (_, k) => ev('login.failed', ms + k * 1_000, { ip: ips[k % ips.length] as string }))

    const cases: Record<string, AuthEvent[]> = {
      // 10 failures from one IP: brute_force (marked 24 h).
      brute_force: [alerted, ...failures(10, HOUR), ev('login.failed', LATE)],
      // 6 failures within a minute just before: failure_burst (marked 15 min), 9 points; a
      // medium attack earlier in the day brings the day's rise to 14.
      failure_burst: [
        alerted,
        ev('custom', HOUR, { source: 'sdk', strategy: null, name: 'probe', severity: 'medium' }),
        ...failures(6, LATE - 11 * MINUTE),
        ev('login.failed', LATE),
      ],
      // 20 failures from 3 IPs (under 10 from each): distributed_guessing (marked 24 h).
      distributed_guessing: [
        alerted,
        ...failures(20, HOUR, [X, '198.51.100.9', '192.0.2.1']),
        ev('login.failed', LATE, { ip: '198.51.100.9' }),
      ],
      // X flagged, then 6 failures of user 1 from it: stuffing_target (marked 24 h).
      stuffing_target: [alerted, ...flagX(HOUR), ...failures(6, HOUR + MINUTE), ev('login.failed', LATE)],
      // X flagged, then user 1 logs in from it: success_from_flagged_ip (marked 24 h), and
      // again from the same browser a day later.
      success_from_flagged_ip: [
        alerted,
        ...flagX(HOUR),
        ev('login.succeeded', HOUR + MINUTE),
        ev('login.succeeded', LATE),
      ],
    }

    const alertsOn = async (store: Store, events: readonly AuthEvent[]): Promise<string[]> => {
      const alerts: string[] = []
      const engine = engineOn(store, {
        onAlert: (alert) => alerts.push(`${alert.userKey}@${alert.at}`),
      })
      for (const event of events) await engine.process(event)
      return alerts
    }
    const expected = [`id:1@${at(0)}`, `id:1@${at(LATE)}`]
    for (const [detection, events] of Object.entries(cases)) {
      it(`${detection}`, async () => {
        // The detection fired once, before the late event, and the late event added nothing.
        const memory = new MemoryStore()
        const engine = engineOn(memory, { onAlert: () => {} })
        for (const event of events.slice(0, -1)) await engine.process(event)
        const before = await engine.risk('id:1')
        assert.equal(before.entries.filter((e) => e.detection === detection).length, 1, `${detection} fired once`)
        await engine.process(events[events.length - 1] as AuthEvent)
        assert.equal((await engine.risk('id:1')).entries.length, before.entries.length, 'the late event added nothing')
        await memory.close()

        assert.deepEqual(await alertsOn(new MemoryStore(), events), expected)
        assert.deepEqual(await alertsOn(runOnly(new MemoryStore()), events), expected)
        const prefix = testPrefix('engine-held')
        const redis = new RedisStore({ url: REDIS_URL, prefix })
        try {
          assert.deepEqual(await alertsOn(redis, events), expected)
        } finally {
          await redis.close()
          await dropKeys(admin, prefix)
        }
      })
    }
  })

  it('DirectOps is busy only between begin() and end(), and does not keep an answer past its batch', () => {
    const store = new MemoryStore()
    const ops = new DirectOps(store)
    assert.equal(ops.busy, false)
    ops.begin(T0)
    assert.equal(ops.busy, true)
    const i = ops.read('id:1', 'ledger', 0)
    const j = ops.hit('ip:1', 'failures', true, T0 - MINUTE, MINUTE, 'a')
    assert.deepEqual([i, j], [0, 1])
    assert.deepEqual(ops.results[j], { count: 1, distinct: 1, member: 1 })
    ops.end()
    assert.equal(ops.busy, false)
    assert.deepEqual(ops.results, [null, null])
    // A new batch numbers its answers from 0 again.
    assert.equal(ops.begin(T0).marked('ip:1', 'flagged'), 0)
    ops.end()
    void store.close()
  })
})

describe('risk engine: a login merged into its user, and a crossing whose ledger cannot be read', () => {
  const IP = '203.0.113.7'
  let n = 0
  const at = (ms: number): string => new Date(T0 + ms).toISOString()
  const failure = (ms: number, login = 'alice'): AuthEvent => ({
    id: `m${n++}`,
    type: 'login.failed',
    reason: 'invalid_credentials',
    at: at(ms),
    source: 'passport',
    mode: 'advanced',
    strategy: 'local',
    identity: { login },
    userKey: `login:${login}`,
    loginKey: `login:${login}`,
    ip: IP,
    userAgent: UAS[0] as string,
  })
  const success = (ms: number, id = 1, login = 'alice'): AuthEvent => ({
    id: `m${n++}`,
    type: 'login.succeeded',
    at: at(ms),
    source: 'passport',
    mode: 'advanced',
    strategy: 'local',
    identity: { id },
    userKey: `id:${id}`,
    loginKey: `login:${login}`,
    ip: IP,
    userAgent: UAS[0] as string,
  })
  const attack = (ms: number, severity: 'low' | 'high'): AuthEvent => ({
    id: `m${n++}`,
    type: 'custom',
    at: at(ms),
    source: 'sdk',
    mode: 'advanced',
    strategy: null,
    name: 'probe',
    severity,
    identity: { id: 1 },
    userKey: 'id:1',
    ip: IP,
    userAgent: null,
  })

  /** Runs `fn` on a MemoryStore (direct path), a MemoryStore through run() and a RedisStore. */
  const onEveryStore = async (fn: (store: Store, name: string) => Promise<void>): Promise<void> => {
    await fn(new MemoryStore(), 'memory (direct)')
    await fn(runOnly(new MemoryStore()), 'memory (run)')
    const prefix = testPrefix('engine-merge')
    const redis = new RedisStore({ url: REDIS_URL, prefix })
    try {
      await fn(redis, 'redis')
    } finally {
      await redis.close()
      await dropKeys(admin, prefix)
    }
  }

  it('a user inherits every alert mark of its login; a takeover alerts anyway: escalate [20], 10 failures then a success (login:alice@20, id:1@20)', async () => {
    await onEveryStore(async (store, name) => {
      const alerts: string[] = []
      const engine = engineOn(
        store,
        { onAlert: (alert) => alerts.push(`${alert.userKey}@${alert.level}`) },
        riskIncrease({ escalate: [20] }),
      )
      // 5 wrong passwords + a burst + a brute force: 24 points under the login, over 10 and 20.
      for (let i = 0; i < 10; i++) await engine.process(failure(i * 1_000))
      // The right password: the login's 24 and success_after_brute_force's 20 are the user's 44.
      await engine.process(success(11_000))
      assert.equal((await engine.risk('id:1')).rise24h, 44, name)
      // The brute force alerted under the login; the success that ends it is a takeover,
      // which alerts under the user though the user inherits the login's marks.
      assert.deepEqual(alerts, ['login:alice@20', 'id:1@20'], name)
      // A second success of the account later that day is not a second takeover.
      await engine.process(success(60_000))
      assert.deepEqual(alerts, ['login:alice@20', 'id:1@20'], `${name}: once`)
    })
  })

  it("a login crossing on another process between a success's two batches: its entries and its alert come over together (one alert)", async () => {
    // Two processes on one Redis: A scores the success, whose second batch waits while B
    // scores failures on the login that cross 10 there.
    const prefix = testPrefix('engine-merge-race')
    const storeA = new RedisStore({ url: REDIS_URL, prefix })
    const storeB = new RedisStore({ url: REDIS_URL, prefix })
    try {
      let release: (() => void) | undefined
      let calls = 0
      const gated: Store = {
        run: async (ops, now) => {
          if (++calls === 2) await new Promise<void>((resolve) => (release = resolve))
          return storeA.run(ops, now)
        },
        close: async () => {},
      }
      const alerts: string[] = []
      const onAlert = (alert: { userKey: string; level: number }): void =>
        void alerts.push(`${alert.userKey}@${alert.level}`)
      const a = engineOn(gated, { onAlert })
      const b = engineOn(storeB, { onAlert })
      for (let i = 0; i < 4; i++) await b.process(failure(i * 1_000))
      const pending = a.process(success(10_000))
      while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 5))
      for (let i = 0; i < 8; i++) await b.process(failure(4_000 + i * 500))
      release()
      await pending
      assert.deepEqual(alerts, ['login:alice@10'], 'the user inherits the alert its entries already raised')
      assert.ok((await a.risk('id:1')).rise24h > 10, 'the entries came over')
    } finally {
      await storeA.close()
      await storeB.close()
      await dropKeys(admin, prefix)
    }
  })

  it('a takeover seen by two processes at once alerts once (its entry is claimed once a day)', async () => {
    const prefix = testPrefix('engine-takeover-once')
    const storeA = new RedisStore({ url: REDIS_URL, prefix })
    const storeB = new RedisStore({ url: REDIS_URL, prefix })
    try {
      const alerts: string[] = []
      const onAlert = (alert: { userKey: string; level: number }): void =>
        void alerts.push(`${alert.userKey}@${alert.level}`)
      const a = engineOn(storeA, { onAlert })
      const b = engineOn(storeB, { onAlert })
      for (let i = 0; i < 10; i++) await a.process(failure(i * 1_000))
      assert.deepEqual(alerts, ['login:alice@10'])
      // The right password on two app servers at the same moment (two tabs, a retry).
      await Promise.all([a.process(success(11_000)), b.process(success(11_000))])
      assert.deepEqual(alerts, ['login:alice@10', 'id:1@10'])
    } finally {
      await storeA.close()
      await storeB.close()
      await dropKeys(admin, prefix)
    }
  })

  it('two successes of one login at once merge its ledger once (no doubled rise, no false alert)', async () => {
    await onEveryStore(async (store, name) => {
      const alerts: string[] = []
      const engine = engineOn(store, { onAlert: (alert) => alerts.push(`${alert.userKey}@${alert.level}`) })
      // 5 typos: 5 wrong passwords and a burst, 9 points under the login, no alert.
      for (let i = 0; i < 5; i++) await engine.process(failure(i * 1_000))
      // Two sign-ins of that login overlap (two tabs, two processes, a hub scoring a batch):
      // both facts batches run before either score batch (on Redis: in one script call each).
      await Promise.all([engine.process(success(10_000)), engine.process(success(10_000))])
      const user = await engine.risk('id:1')
      assert.deepEqual(
        user.entries.map((e) => e.detection),
        [...Array(5).fill('wrong_password'), 'failure_burst'],
        name,
      )
      assert.equal(user.rise24h, 9, name)
      assert.deepEqual((await engine.risk('login:alice')).entries, [], name)
      assert.deepEqual(alerts, [], `${name}: 9 points alert no one`)
    })
  })

  /**
   * A store whose ledger read right after a crossing fails once (a Redis blip between
   * the score's batch and the read). Keeps the direct path (`applySync`) when the
   * wrapped store has one, so both of the engine's paths are covered.
   */
  const crossed = (r: StoreResult): boolean =>
    r !== null && typeof r === 'object' && 'crossed' in r && r.crossed.length > 0
  /** A store whose next ledger read fails (a Redis blip) once a result satisfies `arm` (by default a crossing). */
  const blipAfterCrossing = (inner: Store, arm: (r: StoreResult) => boolean = crossed): Store => {
    let armed = false
    const blip = (): Error => {
      armed = false
      return new Error('read ECONNRESET (simulated)')
    }
    const wrapped: Store & { applySync?: (op: StoreOp, now: number) => StoreResult } = {
      run(ops, now) {
        if (armed && ops.length === 1 && ops[0]?.op === 'read') return Promise.reject(blip())
        return inner.run(ops, now).then((results) => {
          if (results.some(arm)) armed = true
          return results
        })
      },
      close: () => inner.close(),
    }
    if (inner instanceof MemoryStore) {
      wrapped.applySync = (op, now) => {
        if (armed && op.op === 'read') throw blip()
        const result = inner.applySync(op, now)
        if (arm(result)) armed = true
        return result
      }
    }
    return wrapped
  }

  it('a takeover still alerts when the ledger read after it fails (its once-a-day mark is already claimed)', async () => {
    await onEveryStore(async (store, name) => {
      const alerts: RiskAlert[] = []
      // The read after the score that added the takeover fails (a Redis blip).
      const tookOver = (r: StoreResult): boolean =>
        r !== null &&
        typeof r === 'object' &&
        'added' in r &&
        r.added.some((e) => e.detection === 'success_after_brute_force')
      const engine = engineOn(
        blipAfterCrossing(store, tookOver),
        { onAlert: (alert) => alerts.push(alert) },
        riskIncrease(),
        createDiagnostics({ warn: () => {}, error: () => {} }),
      )
      for (let i = 0; i < 10; i++) await engine.process(failure(i * 1_000))
      await engine.process(success(11_000))
      assert.deepEqual(
        alerts.map((a) => [a.userKey, a.level, a.partial === true]),
        [
          ['login:alice', 10, false],
          ['id:1', 10, true],
        ],
        name,
      )
    })
  })

  it('a crossing still alerts when the ledger read after it fails: a partial alert from the score, counted as a store error', async () => {
    await onEveryStore(async (store, name) => {
      const alerts: RiskAlert[] = []
      const errors: string[] = []
      const diag = createDiagnostics({ warn: () => {}, error: (m) => errors.push(m) })
      const engine = engineOn(
        blipAfterCrossing(store),
        { onAlert: (alert) => alerts.push(alert) },
        riskIncrease(),
        diag,
      )
      await engine.process(attack(0, 'high')) // 10: not above 10
      await engine.process(attack(MINUTE, 'low')) // 12: crosses, and the read fails
      await engine.process(attack(2 * MINUTE, 'high')) // 22: the window's mark is held
      assert.equal(alerts.length, 1, `${name}: the crossing alerted`)
      const [alert] = alerts as [RiskAlert]
      assert.equal(alert.partial, true, name)
      assert.equal(alert.level, 10, name)
      assert.equal(alert.rise, 12, name)
      assert.equal(alert.at, at(MINUTE), name)
      assert.deepEqual(
        alert.detections.map((d) => [d.detection, d.points, d.at]),
        [['attack_low', 2, at(MINUTE)]],
        name,
      )
      assert.equal(alert.score, 2, name)
      assert.equal(diag.snapshot().counters.store_errors, 1, name)
      assert.equal(errors.length, 1, name)
      assert.equal((await engine.risk('id:1')).entries.length, 3, name)
    })
  })
})
