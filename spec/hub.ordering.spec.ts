/**
 * The hub receives batches in whatever order the network and the forwarders' retries
 * deliver them: a later batch may arrive before an earlier one, several app servers
 * forward independently, and a batch's events need not be in time order. Two real hubs
 * on 127.0.0.1 with the default reorder window, one fed in time order and one fed out of
 * order, must end with the same user scores, ledgers, timelines and a single alert. The
 * API is read as a person would read it (GET /v1/users/:userKey with the token), once
 * the window has passed (`flush()`, or waiting for it).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ReorderBuffer } from '../lib/hub/reorder.js'
import type { AuthEvent } from '../lib/index.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)
const MINUTE = 60_000

/** Two hubs with one frozen clock, so scores (decayed by time) compare exactly, and the default reorder window. */
const twoHubs = async (now: number): Promise<[RunningHub, RunningHub]> => [
  await startHub({ clock: () => now }, { reorder: true }),
  await startHub({ clock: () => now }, { reorder: true }),
]

/** Polls an async condition. */
const eventually = async (condition: () => Promise<boolean>, what: string, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** What a reader sees once the reorder window has passed for every batch posted. */
const settled = async (...hubs: RunningHub[]): Promise<void> => {
  for (const hub of hubs) await hub.hub.flush()
}

const post = async (
  hub: RunningHub,
  events: readonly AuthEvent[],
): Promise<{ accepted: number; duplicates: number }> => {
  const res = await postBatch(hub.ingestUrl, await signBatch(events, { key }))
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body
}

interface UserJson {
  userKey: string
  score: number
  rise24h: number
  failed: number
  succeeded: number
  firstSeen: string
  lastSeen: string
  entries: { detection: string; points: number; at: string; evidence?: Record<string, unknown> }[]
  events: { id: string; at: string }[]
  alerts: { userKey: string; rise: number }[]
}

const userOf = async (hub: RunningHub, userKey: string): Promise<UserJson> => {
  const res = await fetch(`${hub.base}/v1/users/${encodeURIComponent(userKey)}`, {
    headers: { Authorization: `Bearer ${HUB_TOKEN}` },
  })
  assert.equal(res.status, 200, `GET /v1/users/${userKey}`)
  return (await res.json()) as UserJson
}

/** Detections as a multiset (name, points, evidence), whatever their dates and order. */
const detections = (user: UserJson): string[] =>
  user.entries.map((e) => JSON.stringify([e.detection, e.points, e.evidence ?? null])).sort()

/** A fixed permutation that puts every event out of time order. */
const scramble = <T>(xs: readonly T[]): T[] => {
  const order = [3, 0, 6, 1, 5, 2, 4]
  assert.equal(xs.length, order.length)
  return order.map((i) => xs[i] as T)
}

/**
 * A brute force on `login:victim` from one IP, one failure a minute for 12 minutes,
 * half an hour ago; and a few failures of another user from another IP in between.
 */
const bruteForce = (now: number): { first: AuthEvent[]; second: AuthEvent[] } => {
  const start = now - 30 * MINUTE
  const victim = Array.from({ length: 12 }, (_, i) => sampleEvent({ at: new Date(start + i * MINUTE).toISOString() }))
  const bystander = (i: number) =>
    sampleEvent({
      at: new Date(start + i * MINUTE + 30_000).toISOString(),
      identity: { login: 'bystander' },
      userKey: 'login:bystander',
      loginKey: 'login:bystander',
      ip: '198.51.100.4',
    })
  // Two batches of seven events: six of the victim's and one of the bystander's each.
  return { first: [...victim.slice(0, 6), bystander(2)], second: [...victim.slice(6), bystander(8)] }
}

/**
 * The brute force given to two hubs: in time order to one, batch 2 before batch 1 and
 * each scrambled to the other; read once the reorder window has passed.
 */
const bruteForceBothWays = async (): Promise<{ first: AuthEvent[]; ordered: RunningHub; shuffled: RunningHub }> => {
  const now = Date.now()
  const { first, second } = bruteForce(now)
  const [ordered, shuffled] = await twoHubs(now)
  await post(ordered, first)
  await post(ordered, second)
  await post(shuffled, scramble(second))
  await post(shuffled, scramble(first))
  await settled(ordered, shuffled)
  return { first, ordered, shuffled }
}

/** Server A's twelve failures for "victim" and server B's success a minute after them. */
const takeover = (now: number): { failures: AuthEvent[]; success: AuthEvent } => {
  const start = now - 30 * MINUTE
  return {
    failures: Array.from({ length: 12 }, (_, i) => sampleEvent({ at: new Date(start + i * MINUTE).toISOString() })),
    success: sampleEvent({
      type: 'login.succeeded',
      reason: undefined,
      status: 200,
      identity: { id: 'victim' },
      userKey: 'id:victim',
      at: new Date(start + 13 * MINUTE).toISOString(),
      attempts: [{ strategy: 'local', outcome: 'succeeded' }],
    }),
  }
}

describe('hub: batches and events out of order', () => {
  it('batch 2 before batch 1, each shuffled: same scores, rises, detections, timelines, and one alert', async () => {
    const { first, ordered, shuffled } = await bruteForceBothWays()
    try {
      for (const userKey of ['login:victim', 'login:bystander']) {
        const a = await userOf(ordered, userKey)
        const b = await userOf(shuffled, userKey)
        assert.equal(b.score, a.score, `${userKey}: score`)
        assert.equal(b.rise24h, a.rise24h, `${userKey}: rise`)
        assert.deepEqual(detections(b), detections(a), `${userKey}: detections`)
        assert.equal(b.failed, a.failed)
        assert.equal(b.firstSeen, a.firstSeen)
        assert.equal(b.lastSeen, a.lastSeen)
        // The timeline is in time order, newest first, whatever the arrival order.
        assert.deepEqual(
          b.events.map((e) => e.id),
          a.events.map((e) => e.id),
          `${userKey}: timeline`,
        )
        const times = b.events.map((e) => Date.parse(e.at))
        assert.deepEqual(
          times,
          [...times].sort((x, y) => y - x),
          `${userKey}: newest first`,
        )
      }
      // The scenario is what it claims to be: a brute force that crossed the threshold.
      const victim = await userOf(ordered, 'login:victim')
      assert.equal(victim.rise24h, 24, 'wrong passwords 5 x 1, a burst +4, a brute force +15')
      assert.ok(detections(victim).some((d) => d.includes('"brute_force"')))
      assert.equal((await userOf(ordered, 'login:bystander')).rise24h, 2)

      for (const hub of [ordered, shuffled]) {
        assert.equal(hub.alerts.length, 1, 'one alert for the victim, none for the bystander')
        assert.equal(hub.alerts[0]?.userKey, 'login:victim')
        assert.equal(hub.alerts[0]?.rise, victim.rise24h)
        assert.equal(hub.counter('alerts'), 1)
      }
      assert.equal(shuffled.alerts[0]?.rise, ordered.alerts[0]?.rise)

      // A forwarder's retry of an already-scored batch (its answer was lost) changes nothing.
      const again = await post(shuffled, first)
      await settled(shuffled)
      assert.deepEqual(again, { accepted: 0, duplicates: 7, rejected: [] } as unknown as typeof again)
      assert.equal((await userOf(shuffled, 'login:victim')).score, victim.score)
      assert.equal(shuffled.alerts.length, 1)
    } finally {
      await ordered.close()
      await shuffled.close()
    }
  })

  it('the ledger itself is the same as in order: each detection dated by the event that crossed its threshold', async () => {
    const { ordered, shuffled } = await bruteForceBothWays()
    try {
      for (const userKey of ['login:victim', 'login:bystander']) {
        const a = await userOf(ordered, userKey)
        const b = await userOf(shuffled, userKey)
        assert.deepEqual(b.entries, a.entries, `${userKey}: ledger`)
      }
      assert.deepEqual(
        shuffled.alerts[0]?.detections.map((d) => [d.detection, d.at]),
        ordered.alerts[0]?.detections.map((d) => [d.detection, d.at]),
        'the alert explains the same detections',
      )
    } finally {
      await ordered.close()
      await shuffled.close()
    }
  })

  it('two app servers: a success forwarded before the failures that preceded it scores as in order', async () => {
    // Server A's failures reach the hub after server B's later success (A's batch was late).
    const now = Date.now()
    const { failures, success } = takeover(now)
    const [ordered, shuffled] = await twoHubs(now)
    try {
      await post(ordered, failures)
      await post(ordered, [success])
      await post(shuffled, [success])
      await post(shuffled, failures)
      await settled(ordered, shuffled)
      const a = await userOf(ordered, 'id:victim')
      // In order: the brute force moved to the user, and a success right after it.
      assert.ok(detections(a).some((d) => d.includes('"success_after_brute_force"')))
      const b = await userOf(shuffled, 'id:victim')
      assert.equal(b.score, a.score, 'id:victim: score')
      assert.equal(b.rise24h, a.rise24h, 'id:victim: rise')
      assert.deepEqual(detections(b), detections(a), 'id:victim: detections')
      assert.equal(shuffled.alerts.length, ordered.alerts.length, 'alerts')
    } finally {
      await ordered.close()
      await shuffled.close()
    }
  })

  it('events are held for the window after they arrive, then scored by the timer in time order', async () => {
    const { failures, success } = takeover(Date.now())
    const hub = await startHub({ reorderWindow: 400 }, { reorder: true })
    try {
      const posted = Date.now()
      await post(hub, [success])
      await post(hub, failures)
      // Answered at once, not scored yet: the window is still open.
      assert.equal((await hub.hub.risk('id:victim')).score, 0)
      assert.equal((await hub.hub.risk('login:victim')).score, 0)
      await eventually(async () => (await hub.hub.risk('id:victim')).score > 0, 'the timer to score them')
      assert.ok(Date.now() - posted >= 400, 'not before the window')
      const victim = await hub.hub.risk('id:victim')
      assert.ok(victim.entries.some((e) => e.detection === 'success_after_brute_force'))
      assert.ok(
        victim.entries.some((e) => e.detection === 'brute_force'),
        "the login's brute force moved to the user",
      )
      assert.deepEqual((await hub.hub.risk('login:victim')).entries, [])
    } finally {
      await hub.close()
    }
  })

  it('an event later than the window is still scored, only out of order (the success finds no brute force)', async () => {
    const { failures, success } = takeover(Date.now())
    const hub = await startHub({ reorderWindow: 50 }, { reorder: true })
    try {
      await post(hub, [success])
      // Six windows later the success has long been scored, alone.
      await new Promise((r) => setTimeout(r, 300))
      await post(hub, failures)
      await hub.hub.flush()
      assert.equal((await hub.hub.risk('login:victim')).rise24h, 24, 'the failures scored, on the login')
      assert.ok(!(await hub.hub.risk('id:victim')).entries.some((e) => e.detection === 'success_after_brute_force'))
    } finally {
      await hub.close()
    }
  })

  it('close() scores the events still held, so their alerts go out', async () => {
    const { failures } = takeover(Date.now())
    const hub = await startHub({ reorderWindow: '30s' }, { reorder: true })
    await post(hub, failures)
    assert.equal(hub.alerts.length, 0, 'held')
    await hub.close()
    assert.equal(hub.alerts.length, 1)
    assert.equal(hub.alerts[0]?.userKey, 'login:victim')
  })

  it('the buffer is bounded: past max held events the earliest are scored at once, in time order', async () => {
    const scored: string[] = []
    const buffer = new ReorderBuffer(
      60_000,
      3,
      (event) => void scored.push(event.id),
      () => {},
    )
    const at = (minute: number) => new Date(Date.UTC(2030, 0, 1, 0, minute)).toISOString()
    for (const [id, minute] of [
      ['e5', 5],
      ['e1', 1],
      ['e4', 4],
      ['e2', 2],
      ['e3', 3],
    ] as const) {
      buffer.add(sampleEvent({ id, at: at(minute) }))
    }
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(scored, ['e1', 'e2'])
    assert.equal(buffer.size, 3)
    await buffer.flush()
    assert.deepEqual(scored, ['e1', 'e2', 'e3', 'e4', 'e5'])
    assert.equal(buffer.size, 0)
  })

  it('the buffer is bounded by bytes too: past maxBytes the earliest are scored at once, until the rest fits', async () => {
    const scored: string[] = []
    const buffer = new ReorderBuffer(
      60_000,
      100,
      (event) => void scored.push(event.id),
      () => {},
      Date.now,
      1000,
    )
    const at = (minute: number) => new Date(Date.UTC(2030, 0, 1, 0, minute)).toISOString()
    buffer.add(sampleEvent({ id: 'e3', at: at(3) }), 400)
    buffer.add(sampleEvent({ id: 'e1', at: at(1) }), 400)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(scored, [], '800 bytes fit')
    // 1,500 bytes held: the earliest go until at most 1,000 stay (e1, then e2 is the earliest).
    buffer.add(sampleEvent({ id: 'e2', at: at(2) }), 700)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(scored, ['e1', 'e2'])
    assert.equal(buffer.size, 1)
    // What left was counted out: 400 held, 600 more fit.
    buffer.add(sampleEvent({ id: 'e4', at: at(4) }), 600)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(scored, ['e1', 'e2'])
    await buffer.flush()
    assert.deepEqual(scored, ['e1', 'e2', 'e3', 'e4'])
  })

  it('over HTTP: a body padded with refused entries does not make its events count for less', async () => {
    const { failures } = takeover(Date.now())
    const padded = failures.map((e) => ({ ...e, userAgent: 'x'.repeat(500) }))
    const hub = await startHub({ reorderWindow: '60s', limits: { held: 8 * 1024 } }, { reorder: true })
    try {
      // 12 events of about 900 bytes and 988 refused zeros: 11 kB in all, over the 8 kB bound
      // held. Shared among the 1,000 entries, the events counted 11 bytes each.
      const res = await postBatch(hub.ingestUrl, await signBatch([...padded, ...Array(988).fill(0)], { key }))
      assert.equal(res.status, 422, JSON.stringify(res.body).slice(0, 200))
      assert.equal(res.body.accepted, 12)
      await eventually(async () => (await hub.hub.risk('login:victim')).score > 0, 'the earliest to be scored', 2000)
    } finally {
      await hub.close()
    }
  })

  it('over HTTP: large events past limits.held are scored at once instead of waiting out the window in memory', async () => {
    const { failures } = takeover(Date.now())
    // About 60 kB of JSON: a key holder's events as large as the schema allows fill it fast.
    const padded = failures.map((e) => ({ ...e, userAgent: `${'x'.repeat(500)}` }))
    const big = Array.from({ length: 100 }, (_, i) =>
      sampleEvent({
        userKey: `login:other-${i}`,
        loginKey: `login:other-${i}`,
        userAgent: 'y'.repeat(512),
        at: new Date().toISOString(),
      }),
    )
    const hub = await startHub({ reorderWindow: '60s', limits: { held: 32 * 1024 } }, { reorder: true })
    try {
      await post(hub, padded)
      assert.equal((await hub.hub.risk('login:victim')).score, 0, 'held: under the limit')
      await post(hub, big)
      // The victim's failures are the earliest: scored now, not in a minute.
      await eventually(async () => (await hub.hub.risk('login:victim')).score > 0, 'the earliest to be scored', 2000)
      assert.ok(
        (await hub.hub.risk('login:victim')).entries.some((e) => e.detection === 'brute_force'),
        'in time order, as a whole: the brute force is seen',
      )
    } finally {
      await hub.close()
    }
  })
})
