/**
 * The Store contract suite: every store implementation (the in-memory default
 * today, Redis later) must pass it. It talks to the store through `run(ops, now)`
 * only, with an explicit logical `now`, so expiry is tested by moving `now`
 * rather than by sleeping, and a shared backend works: each test uses keys under
 * its own random prefix and never assumes the store is empty. Every op addresses
 * a field of a key; the helpers below default the field by kind (`hits`, `mark`,
 * `recent`, `ledger`), and the "fields" tests check that fields of one key are
 * independent.
 *
 * Not named `*.spec.ts`: it registers nothing until a spec file calls
 * `storeContract(...)` with a factory for the store under test.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { afterEach, beforeEach, describe, it } from 'node:test'
import type {
  HitResult,
  LedgerEntry,
  RememberResult,
  ScoredEntry,
  ScoreResult,
  Store,
  StoreOp,
  StoreResult,
  Threshold,
} from '../lib/index.js'
import { DISTINCT_CAP, WINDOW_CAP } from '../lib/store/store.js'

const SECOND = 1_000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE

/** Keys under a fresh random prefix, so tests sharing one backend never see each other's data. */
const keySpace = (): ((name: string) => string) => {
  const prefix = `contract:${randomUUID()}:`
  return (name) => `${prefix}${name}`
}

const entry = (
  detection: string,
  points: number,
  at: number,
  evidence?: Record<string, string | number>,
): LedgerEntry => (evidence === undefined ? { detection, points, at } : { detection, points, at, evidence })

export const storeContract = (
  name: string,
  makeStore: () => Promise<Store> | Store,
  cleanup?: (store: Store) => Promise<void>,
): void => {
  describe(`Store contract: ${name}`, () => {
    let store: Store
    let k: (name: string) => string
    // Real wall-clock time as the base, so a backend that also sets real TTLs
    // (Redis PEXPIRE) agrees with the logical `now` the tests move forward.
    let T0: number

    beforeEach(async () => {
      store = await makeStore()
      k = keySpace()
      T0 = Date.now()
    })

    afterEach(async () => {
      await (cleanup ? cleanup(store) : store.close())
    })

    const run = (ops: readonly StoreOp[], now: number): Promise<StoreResult[]> => store.run(ops, now)
    const one = async <R extends StoreResult>(op: StoreOp, now: number): Promise<R> => {
      const results = await run([op], now)
      assert.equal(results.length, 1, 'one result per op')
      return results[0] as R
    }
    const hit = (
      key: string,
      now: number,
      opts: { since?: number; ttl?: number; member?: string; add?: boolean; field?: string } = {},
    ) =>
      one<HitResult>(
        {
          op: 'hit',
          key,
          field: opts.field ?? 'hits',
          add: opts.add ?? true,
          since: opts.since ?? now - HOUR,
          ttl: opts.ttl ?? HOUR,
          ...(opts.member === undefined ? {} : { member: opts.member }),
        },
        now,
      )
    const claim = (key: string, now: number, ttl = MINUTE, field = 'mark') =>
      one<boolean>({ op: 'claim', key, field, ttl }, now)
    const marked = (key: string, now: number, field = 'mark') => one<boolean>({ op: 'marked', key, field }, now)
    const remember = (key: string, value: string, now: number, max = 3, ttl = HOUR, field = 'recent') =>
      one<RememberResult>({ op: 'remember', key, field, value, max, ttl }, now)
    const read = (key: string, now: number, since = now - 30 * 24 * HOUR, field = 'ledger') =>
      one<readonly LedgerEntry[]>({ op: 'read', key, field, since }, now)
    const score = (
      key: string,
      now: number,
      entries: readonly ScoredEntry[],
      opts: {
        keepSince?: number
        max?: number
        ttl?: number
        windowSince?: number
        thresholds?: Threshold[]
        field?: string
      } = {},
    ) =>
      one<ScoreResult>(
        {
          op: 'score',
          key,
          field: opts.field ?? 'ledger',
          entries,
          keepSince: opts.keepSince ?? now - 30 * 24 * HOUR,
          max: opts.max ?? 100,
          ttl: opts.ttl ?? 30 * 24 * HOUR,
          windowSince: opts.windowSince ?? now - 24 * HOUR,
          thresholds: opts.thresholds ?? [],
        },
        now,
      )

    describe('hit', () => {
      it('adds one hit per call and counts the hits after `since`', async () => {
        assert.equal((await hit(k('h'), T0)).count, 1)
        assert.equal((await hit(k('h'), T0 + SECOND)).count, 2)
        assert.equal((await hit(k('h'), T0 + 2 * SECOND)).count, 3)
        // Only hits strictly after `since` count: T0 + SECOND is on the boundary.
        assert.equal((await hit(k('h'), T0 + 3 * SECOND, { add: false, since: T0 + SECOND })).count, 1)
        assert.equal((await hit(k('h'), T0 + 3 * SECOND, { add: false, since: T0 + SECOND - 1 })).count, 2)
        assert.equal((await hit(k('h'), T0 + 3 * SECOND, { add: false, since: T0 - 1 })).count, 3)
        // A newer window drops the oldest hits from the count, not from the key.
        assert.equal((await hit(k('h'), T0 + 10 * MINUTE, { since: T0 + 10 * MINUTE - MINUTE })).count, 1)
        assert.equal((await hit(k('h'), T0 + 10 * MINUTE, { add: false, since: T0 - 1 })).count, 4)
      })

      it('`add: false` only reads: it counts without recording and answers zeros for a missing key', async () => {
        assert.deepEqual(await hit(k('missing'), T0, { add: false }), { count: 0, distinct: 0, member: 0 })
        await hit(k('h'), T0)
        for (let i = 0; i < 3; i++) assert.equal((await hit(k('h'), T0 + i, { add: false })).count, 1)
        assert.equal((await hit(k('h'), T0 + 5)).count, 2)
        // Reading a missing key did not create it.
        assert.equal((await hit(k('missing'), T0 + 6, { add: false })).count, 0)
      })

      it('members: `distinct` counts distinct members and `member` the hits of the op member, within the window', async () => {
        await hit(k('m'), T0, { member: 'old' })
        await hit(k('m'), T0 + MINUTE, { member: 'a' })
        await hit(k('m'), T0 + MINUTE, { member: 'b' })
        await hit(k('m'), T0 + 2 * MINUTE, { member: 'a' })
        const added = await hit(k('m'), T0 + 3 * MINUTE, { member: 'c', since: T0 + 30 * SECOND })
        // 'old' is before the window: it counts neither as a hit nor as a member.
        assert.deepEqual(added, { count: 4, distinct: 3, member: 1 })
        assert.deepEqual(await hit(k('m'), T0 + 3 * MINUTE, { add: false, member: 'a', since: T0 + 30 * SECOND }), {
          count: 4,
          distinct: 3,
          member: 2,
        })
        assert.deepEqual(await hit(k('m'), T0 + 3 * MINUTE, { add: false, member: 'old', since: T0 - 1 }), {
          count: 5,
          distinct: 4,
          member: 1,
        })
        assert.deepEqual(await hit(k('m'), T0 + 3 * MINUTE, { add: false, member: 'zzz', since: T0 - 1 }), {
          count: 5,
          distinct: 4,
          member: 0,
        })
        // Without an op member, members are not looked at: both are 0 (the count is not).
        assert.deepEqual(await hit(k('m'), T0 + 3 * MINUTE, { add: false, since: T0 - 1 }), {
          count: 5,
          distinct: 0,
          member: 0,
        })
      })

      it('a key expires `ttl` after its last write: the hits are gone and counting starts over', async () => {
        await hit(k('t'), T0, { ttl: MINUTE })
        await hit(k('t'), T0 + 30 * SECOND, { ttl: MINUTE })
        // The second write extended the key's life past T0 + MINUTE.
        assert.equal((await hit(k('t'), T0 + 80 * SECOND, { add: false, since: T0 - 1, ttl: MINUTE })).count, 2)
        assert.equal((await hit(k('t'), T0 + 91 * SECOND, { add: false, since: T0 - 1, ttl: MINUTE })).count, 0)
        assert.equal((await hit(k('t'), T0 + 92 * SECOND, { since: T0 - 1, ttl: MINUTE })).count, 1)
      })

      it('a late hit (older than hits already recorded) is counted by its own time, members with it', async () => {
        await hit(k('late'), T0 + 10 * SECOND, { member: 'a' })
        await hit(k('late'), T0 + 20 * SECOND, { member: 'b' })
        // Scored after newer ones (a backlog reaching the hub): 5 s, before both.
        await hit(k('late'), T0 + 5 * SECOND, { member: 'c' })
        const count = async (since: number, member?: string) =>
          hit(k('late'), T0 + 21 * SECOND, { add: false, since, ...(member === undefined ? {} : { member }) })
        assert.equal((await count(T0 + 6 * SECOND)).count, 2, 'the late hit is not after 6 s')
        assert.equal((await count(T0 + 4 * SECOND)).count, 3)
        assert.deepEqual(await count(T0 + 6 * SECOND, 'c'), { count: 2, distinct: 2, member: 0 })
        assert.deepEqual(await count(T0 + 4 * SECOND, 'c'), { count: 3, distinct: 3, member: 1 })
        // A late hit does not shorten the window's life: it lasts `ttl` from its newest hit.
        await hit(k('life'), T0 + 30 * MINUTE, { ttl: HOUR })
        await hit(k('life'), T0, { ttl: HOUR })
        assert.equal((await hit(k('life'), T0 + 80 * MINUTE, { add: false, since: T0 })).count, 1)
      })

      it('a late hit at a full window: the WINDOW_CAP newest are counted, the late one is not', async () => {
        for (let i = 0; i < WINDOW_CAP; i++) await hit(k('full'), T0 + (i + 1) * SECOND, { member: `m${i % 3}` })
        const late = await hit(k('full'), T0, { since: T0 - MINUTE, member: 'late' })
        assert.deepEqual(late, { count: WINDOW_CAP, distinct: 3, member: 0 })
      })

      it(`counts saturate at WINDOW_CAP (${WINDOW_CAP}): only the most recent hits are counted`, async () => {
        const n = WINDOW_CAP + 40
        const counts: number[] = []
        // Members repeat every 5 hits, so `distinct` stays below its own cap here.
        for (let i = 0; i < n; i++)
          counts.push((await hit(k('hot'), T0 + i, { since: T0 - 1, member: `m${i % 5}` })).count)
        assert.equal(counts[WINDOW_CAP - 1], WINDOW_CAP)
        assert.ok(
          counts.slice(WINDOW_CAP).every((c) => c === WINDOW_CAP),
          'no count above the cap',
        )
        assert.deepEqual(await hit(k('hot'), T0 + n, { add: false, since: T0 + n - 11, member: 'm0' }), {
          count: 10,
          distinct: 5,
          member: 2,
        })
        // The member count is capped with the window: 128 counted hits, a fifth of them m0's (rounded up).
        assert.deepEqual(await hit(k('hot'), T0 + n, { add: false, since: T0 - 1, member: 'm0' }), {
          count: WINDOW_CAP,
          distinct: 5,
          member: Math.ceil(WINDOW_CAP / 5),
        })
      })

      it(`distinct saturates at DISTINCT_CAP (${DISTINCT_CAP})`, async () => {
        const n = DISTINCT_CAP + 10
        for (let i = 0; i < n; i++) await hit(k('many'), T0 + i, { member: `m${i}` })
        const all = await hit(k('many'), T0 + n, { add: false, since: T0 - 1, member: 'm0' })
        assert.deepEqual(all, { count: n, distinct: DISTINCT_CAP, member: 1 })
        // Below the cap it is exact.
        const few = await hit(k('many'), T0 + n, { add: false, since: T0 + n - 4, member: 'zzz' })
        assert.deepEqual(few, { count: 3, distinct: 3, member: 0 })
      })

      it('reset forgets a key of any kind and answers null', async () => {
        await hit(k('h'), T0)
        await claim(k('c'), T0)
        await score(k('l'), T0, [{ entry: entry('x', 1, T0) }])
        const results = await run(
          [
            { op: 'reset', key: k('h'), field: 'hits' },
            { op: 'reset', key: k('c'), field: 'mark' },
            { op: 'reset', key: k('l'), field: 'ledger' },
            { op: 'reset', key: k('never-written'), field: 'hits' },
          ],
          T0 + 1,
        )
        assert.deepEqual(results, [null, null, null, null])
        assert.equal((await hit(k('h'), T0 + 2, { add: false })).count, 0)
        assert.equal(await marked(k('c'), T0 + 2), false)
        assert.equal(await claim(k('c'), T0 + 2), true)
        assert.deepEqual(await read(k('l'), T0 + 2), [])
      })
    })

    describe('move', () => {
      const move = (key: string, to: string, now: number, field = 'hits') =>
        one<null>({ op: 'move', key, field, to }, now)

      it('merges a window into the same field of another key in time order, members with it, and empties the source', async () => {
        await hit(k('from'), T0, { member: 'a' })
        await hit(k('to'), T0 + SECOND, { member: 'b' })
        await hit(k('from'), T0 + 2 * SECOND, { member: 'a' })
        await hit(k('to'), T0 + 3 * SECOND)
        assert.equal(await move(k('from'), k('to'), T0 + 4 * SECOND), null)
        assert.deepEqual(await hit(k('to'), T0 + 4 * SECOND, { add: false, since: T0 - 1, member: 'a' }), {
          count: 4,
          distinct: 3,
          member: 2,
        })
        // Time order kept: the window after T0 + 1.5 s holds one of each side's hits.
        assert.equal((await hit(k('to'), T0 + 4 * SECOND, { add: false, since: T0 + 1500 })).count, 2)
        assert.deepEqual(await hit(k('from'), T0 + 4 * SECOND, { add: false, since: T0 - 1, member: 'a' }), {
          count: 0,
          distinct: 0,
          member: 0,
        })
        // The merged window grows as before.
        assert.equal((await hit(k('to'), T0 + 5 * SECOND, { since: T0 - 1 })).count, 5)
      })

      it('a window moved to a key without one arrives whole, and keeps the later expiry when merged', async () => {
        await hit(k('from'), T0, { ttl: HOUR, member: 'x' })
        await move(k('from'), k('to'), T0 + 1)
        assert.deepEqual(await hit(k('to'), T0 + 2, { add: false, since: T0 - 1, member: 'x' }), {
          count: 1,
          distinct: 1,
          member: 1,
        })
        // Source: a fresh 1 h window at T0 + 50 min; target: expires T0 + 1 h. Merged, it lives to T0 + 1 h 50.
        await hit(k('from2'), T0 + 50 * MINUTE, { ttl: HOUR })
        await move(k('from2'), k('to'), T0 + 50 * MINUTE)
        assert.equal((await hit(k('to'), T0 + 90 * MINUTE, { add: false, since: T0 - 1, ttl: HOUR })).count, 2)
        assert.equal((await hit(k('to'), T0 + 111 * MINUTE, { add: false, since: T0 - 1, ttl: HOUR })).count, 0)
      })

      it(`a merged window keeps its most recent WINDOW_CAP (${WINDOW_CAP}) hits`, async () => {
        const n = WINDOW_CAP - 8
        for (let i = 0; i < n; i++) await hit(k('from'), T0 + 2 * i)
        for (let i = 0; i < n; i++) await hit(k('to'), T0 + 2 * i + 1)
        await move(k('from'), k('to'), T0 + 2 * n)
        assert.equal((await hit(k('to'), T0 + 2 * n, { add: false, since: T0 - 1 })).count, WINDOW_CAP)
        // The oldest dropped: the window from the 2 (n - 64)th ms holds the newest 128 exactly.
        assert.equal((await hit(k('to'), T0 + 2 * n, { add: false, since: T0 + 2 * (n - 64) - 1 })).count, 128)
        assert.equal((await hit(k('to'), T0 + 2 * n, { add: false, since: T0 + 2 * (n - 10) - 1 })).count, 20)
      })

      it('a mark moves with the later of the two expiries, and the source no longer holds it', async () => {
        await claim(k('from'), T0, 10 * MINUTE)
        await move(k('from'), k('to'), T0 + 1, 'mark')
        assert.equal(await marked(k('from'), T0 + 2), false)
        assert.equal(await marked(k('to'), T0 + 9 * MINUTE), true)
        assert.equal(await marked(k('to'), T0 + 10 * MINUTE + 1), false)
        // The target's own mark lasts longer than the one moved in: it stays.
        await claim(k('long'), T0, HOUR)
        await claim(k('short'), T0, MINUTE)
        await move(k('short'), k('long'), T0 + 1, 'mark')
        assert.equal(await marked(k('long'), T0 + 30 * MINUTE), true)
        assert.equal(await claim(k('long'), T0 + 30 * MINUTE, HOUR), false)
        // And the other way: the target's mark is extended to the moved one's expiry.
        await claim(k('short2'), T0, MINUTE)
        await claim(k('long2'), T0, HOUR)
        await move(k('long2'), k('short2'), T0 + 1, 'mark')
        assert.equal(await marked(k('short2'), T0 + 30 * MINUTE), true)
        assert.equal(await marked(k('short2'), T0 + HOUR + 1), false)
      })

      it('a window moved away starts again like a new one: without members until a hit names one', async () => {
        await hit(k('a'), T0, { member: 'm1' })
        await claim(k('a'), T0, HOUR) // the key lives on through another field
        await move(k('a'), k('b'), T0 + 1)
        await hit(k('a'), T0 + 2)
        assert.deepEqual(await hit(k('a'), T0 + 3, { add: false, member: 'm2', since: T0 - 1 }), {
          count: 1,
          distinct: 0,
          member: 0,
        })
      })

      it("a ledger moves: entries merged in time order (the target's first at equal times), evidence intact, the later expiry, the source empty", async () => {
        await score(k('login'), T0, [{ entry: entry('wrong_password', 1, T0) }], { ttl: 2 * HOUR })
        await score(k('login'), T0 + 2 * MINUTE, [{ entry: entry('brute_force', 15, T0 + 2 * MINUTE, { ip: 'x' }) }], {
          ttl: 2 * HOUR,
        })
        await score(k('user'), T0 + MINUTE, [{ entry: entry('new_device', 2, T0 + MINUTE) }], { ttl: HOUR })
        await score(k('user'), T0 + 2 * MINUTE, [{ entry: entry('own', 3, T0 + 2 * MINUTE) }], { ttl: HOUR })
        assert.deepEqual(await move(k('login'), k('user'), T0 + 3 * MINUTE, 'ledger'), null)
        assert.deepEqual(await read(k('user'), T0 + 3 * MINUTE, T0 - 1), [
          entry('wrong_password', 1, T0),
          entry('new_device', 2, T0 + MINUTE),
          entry('own', 3, T0 + 2 * MINUTE),
          entry('brute_force', 15, T0 + 2 * MINUTE, { ip: 'x' }),
        ])
        assert.deepEqual(await read(k('login'), T0 + 3 * MINUTE, T0 - 1), [])
        // The login's expiry (2 h after its last write) outlives the user's (1 h): kept.
        assert.equal((await read(k('user'), T0 + 90 * MINUTE, T0 - 1)).length, 4)
        assert.deepEqual(await read(k('user'), T0 + 2 * MINUTE + 2 * HOUR + 1, T0 - 1), [])
        // The emptied source scores again from nothing.
        assert.deepEqual(await score(k('login'), T0 + 4 * MINUTE, [{ entry: entry('x', 1, T0 + 4 * MINUTE) }]), {
          added: [entry('x', 1, T0 + 4 * MINUTE)],
          sum: 1,
          crossed: [],
        })
        // To a key without a ledger it arrives whole.
        await move(k('login'), k('fresh'), T0 + 5 * MINUTE, 'ledger')
        assert.deepEqual(await read(k('fresh'), T0 + 5 * MINUTE, T0 - 1), [entry('x', 1, T0 + 4 * MINUTE)])
      })

      it('a score after a ledger move in the same batch counts the moved entries and crosses on them', async () => {
        await score(k('login'), T0, [{ entry: entry('brute_force', 15, T0) }])
        await score(k('user'), T0, [{ entry: entry('own', 1, T0) }])
        const [moved, scored] = await run(
          [
            { op: 'move', key: k('login'), field: 'ledger', to: k('user') },
            {
              op: 'score',
              key: k('user'),
              field: 'ledger',
              entries: [{ entry: entry('success', 2, T0 + 1) }],
              keepSince: T0 - HOUR,
              max: 100,
              ttl: HOUR,
              windowSince: T0 - HOUR,
              thresholds: [{ level: 10, field: 'alert:10', ttl: HOUR }],
            },
          ],
          T0 + 1,
        )
        assert.equal(moved, null)
        assert.deepEqual(scored, { added: [entry('success', 2, T0 + 1)], sum: 18, crossed: [10] })
      })

      it('a ledger moved by parallel batches is merged once: the first takes it, the others find nothing', async () => {
        for (let i = 0; i < 5; i++) await score(k('login'), T0 + i, [{ entry: entry(`e${i}`, 1, T0 + i) }])
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            run(
              [
                { op: 'move', key: k('login'), field: 'ledger', to: k('user') },
                {
                  op: 'score',
                  key: k('user'),
                  field: 'ledger',
                  entries: [],
                  keepSince: T0 - HOUR,
                  max: 100,
                  ttl: HOUR,
                  windowSince: T0 - HOUR,
                  thresholds: [{ level: 5, field: 'alert:5', ttl: HOUR }],
                },
              ],
              T0 + 10 + i,
            ),
          ),
        )
        assert.deepEqual(
          results.map(([, r]) => (r as ScoreResult).sum),
          Array(20).fill(5),
        )
        assert.deepEqual(
          (await read(k('user'), T0 + 40, T0 - 1)).map((e) => e.detection),
          ['e0', 'e1', 'e2', 'e3', 'e4'],
        )
      })

      it('moving what is not there, or has expired, changes nothing', async () => {
        await hit(k('to'), T0)
        await hit(k('old'), T0, { ttl: MINUTE })
        assert.deepEqual(
          await run(
            [
              { op: 'move', key: k('never-written'), field: 'hits', to: k('to') },
              { op: 'move', key: k('old'), field: 'hits', to: k('to') },
              { op: 'move', key: k('to'), field: 'hits', to: k('to') },
            ],
            T0 + 2 * MINUTE,
          ),
          [null, null, null],
        )
        assert.equal((await hit(k('to'), T0 + 2 * MINUTE, { add: false, since: T0 - 1 })).count, 1)
        assert.equal(await marked(k('to'), T0 + 2 * MINUTE), false)
      })
    })

    describe('claim and marked', () => {
      it('claim is true exactly once per ttl window, then again after it expires', async () => {
        assert.equal(await marked(k('c'), T0), false)
        assert.equal(await claim(k('c'), T0, MINUTE), true)
        assert.equal(await claim(k('c'), T0, MINUTE), false)
        assert.equal(await marked(k('c'), T0 + 59 * SECOND), true)
        // A failed claim does not extend the mark.
        assert.equal(await claim(k('c'), T0 + 59 * SECOND, MINUTE), false)
        assert.equal(await marked(k('c'), T0 + MINUTE + 1), false)
        assert.equal(await claim(k('c'), T0 + MINUTE + 1, MINUTE), true)
        assert.equal(await claim(k('c'), T0 + MINUTE + 2, MINUTE), false)
      })

      it('marks are per key', async () => {
        assert.equal(await claim(k('a'), T0), true)
        assert.equal(await marked(k('b'), T0), false)
        assert.equal(await claim(k('b'), T0), true)
        assert.equal(await marked(k('a'), T0), true)
      })
    })

    describe('remember', () => {
      it('answers whether the value is among the last `max` written and how many were recorded before', async () => {
        const seq: [string, boolean, number][] = [
          ['a', false, 0],
          ['b', false, 1],
          ['c', false, 2], // c b a
          ['a', true, 3], // a c b
          ['d', false, 3], // d a c
          ['b', false, 3], // b d a
          ['a', true, 3], // a b d
          ['c', false, 3], // c a b
        ]
        let now = T0
        for (const [value, seen, size] of seq) {
          now += SECOND
          assert.deepEqual(await remember(k('r'), value, now), { seen, size }, `remember ${value}`)
        }
      })

      it('repeats count: a value written `max` times in a row pushes out every other', async () => {
        // Distinct values would keep "a"; the last 3 writes are b, b, b.
        assert.deepEqual(await remember(k('r'), 'a', T0), { seen: false, size: 0 })
        assert.deepEqual(await remember(k('r'), 'b', T0 + 1), { seen: false, size: 1 })
        assert.deepEqual(await remember(k('r'), 'b', T0 + 2), { seen: true, size: 2 })
        assert.deepEqual(await remember(k('r'), 'b', T0 + 3), { seen: true, size: 3 }) // b b b
        assert.deepEqual(await remember(k('r'), 'a', T0 + 4), { seen: false, size: 3 }) // a b b
        assert.deepEqual(await remember(k('r'), 'b', T0 + 5), { seen: true, size: 3 }) // b a b
        assert.deepEqual(await remember(k('r'), 'a', T0 + 6), { seen: true, size: 3 }) // a b a
        assert.deepEqual(await remember(k('r'), 'c', T0 + 7), { seen: false, size: 3 }) // c a b
        assert.deepEqual(await remember(k('r'), 'a', T0 + 8), { seen: true, size: 3 }) // a c a
      })

      it('a list of one value counts up to `max`; `max` 1 remembers only the last', async () => {
        for (let i = 0; i < 5; i++) await remember(k('r'), 'same', T0 + i, 10)
        assert.deepEqual(await remember(k('r'), 'other', T0 + 10, 10), { seen: false, size: 5 })
        for (let i = 0; i < 12; i++) await remember(k('s'), 'same', T0 + i, 10)
        assert.deepEqual(await remember(k('s'), 'same', T0 + 20, 10), { seen: true, size: 10 })
        assert.deepEqual(await remember(k('one'), 'x', T0, 1), { seen: false, size: 0 })
        assert.deepEqual(await remember(k('one'), 'x', T0 + 1, 1), { seen: true, size: 1 })
        assert.deepEqual(await remember(k('one'), 'y', T0 + 2, 1), { seen: false, size: 1 })
        assert.deepEqual(await remember(k('one'), 'x', T0 + 3, 1), { seen: false, size: 1 })
      })

      it('the list expires `ttl` after its last write', async () => {
        await remember(k('r'), 'a', T0, 3, MINUTE)
        assert.deepEqual(await remember(k('r'), 'b', T0 + 50 * SECOND, 3, MINUTE), { seen: false, size: 1 })
        assert.deepEqual(await remember(k('r'), 'a', T0 + 100 * SECOND, 3, MINUTE), { seen: true, size: 2 })
        assert.deepEqual(await remember(k('r'), 'a', T0 + 161 * SECOND, 3, MINUTE), { seen: false, size: 0 })
      })
    })

    describe('score and read', () => {
      it('appends entries and sums the points after `windowSince`; read returns them oldest first, evidence intact', async () => {
        const e1 = entry('wrong_password', 1, T0, { event: 'e1', ip: '192.0.2.0/24', failures24h: 1 })
        const e2 = entry('brute_force', 15, T0 + MINUTE)
        const e3 = entry('new_device', 2.5, T0 + 2 * MINUTE, { device: 'Firefox on Windows' })
        assert.deepEqual(await score(k('l'), T0, [{ entry: e1 }]), { added: [e1], sum: 1, crossed: [] })
        assert.deepEqual(await score(k('l'), T0 + MINUTE, [{ entry: e2 }]), { added: [e2], sum: 16, crossed: [] })
        const third = await score(k('l'), T0 + 2 * MINUTE, [{ entry: e3 }], { windowSince: T0 })
        // e1 is at exactly windowSince: outside the window (strictly after), still on the ledger.
        assert.deepEqual(third, { added: [e3], sum: 17.5, crossed: [] })
        assert.deepEqual(await read(k('l'), T0 + 3 * MINUTE), [e1, e2, e3])
        assert.deepEqual(await read(k('l'), T0 + 3 * MINUTE, T0), [e2, e3])
        assert.deepEqual(await read(k('l'), T0 + 3 * MINUTE, T0 + 2 * MINUTE), [])
        assert.deepEqual(await read(k('never-written'), T0), [])
      })

      it('read stays oldest first when a score appends entries older than the ledger (a merged ledger)', async () => {
        // The engine merges a login's earlier failures into the user's ledger on success:
        // those entries can be older than the user's own.
        await score(k('l'), T0 + 2 * HOUR, [{ entry: entry('own', 1, T0 + 2 * HOUR) }])
        await score(k('l'), T0 + 3 * HOUR, [
          { entry: entry('merged-old', 1, T0) },
          { entry: entry('merged-mid', 1, T0 + HOUR) },
          { entry: entry('new', 1, T0 + 3 * HOUR) },
        ])
        assert.deepEqual(
          (await read(k('l'), T0 + 3 * HOUR, T0 - 1)).map((e) => e.detection),
          ['merged-old', 'merged-mid', 'own', 'new'],
        )
        // Trimming by keepSince then drops every old entry, wherever it was appended.
        await score(k('l'), T0 + 4 * HOUR, [{ entry: entry('latest', 1, T0 + 4 * HOUR) }], {
          keepSince: T0 + HOUR + 30 * MINUTE,
          windowSince: T0 - 1,
        })
        assert.deepEqual(
          (await read(k('l'), T0 + 4 * HOUR, T0 - 1)).map((e) => e.detection),
          ['own', 'new', 'latest'],
        )
      })

      it('a score without entries adds nothing and reports the existing sum', async () => {
        assert.deepEqual(await score(k('empty'), T0, []), { added: [], sum: 0, crossed: [] })
        assert.deepEqual(await read(k('empty'), T0), [])
        await score(k('l'), T0, [{ entry: entry('x', 3, T0) }])
        assert.deepEqual(await score(k('l'), T0 + 1, []), { added: [], sum: 3, crossed: [] })
      })

      it('an entry with `once` is added only by the call that sets its mark, again after the mark expires', async () => {
        const once = { field: 'once', ttl: HOUR }
        const first = entry('failure_burst', 4, T0)
        assert.deepEqual((await score(k('l'), T0, [{ entry: first, once }])).added, [first])
        const dropped = await score(k('l'), T0 + MINUTE, [
          { entry: entry('failure_burst', 4, T0 + MINUTE), once },
          { entry: entry('wrong_password', 1, T0 + MINUTE) },
        ])
        // The mark was set: only the plain entry is added, and the sum counts what is there.
        assert.deepEqual(dropped.added, [entry('wrong_password', 1, T0 + MINUTE)])
        assert.equal(dropped.sum, 5)
        // The same once key twice in one call: only the first.
        const twice = await score(k('l2'), T0, [
          { entry: entry('a', 1, T0), once: { field: 'once2', ttl: HOUR } },
          { entry: entry('b', 1, T0), once: { field: 'once2', ttl: HOUR } },
        ])
        assert.deepEqual(twice.added, [entry('a', 1, T0)])
        // The once mark is an ordinary mark, a field of the ledger's key.
        assert.equal(await marked(k('l'), T0 + MINUTE, 'once'), true)
        assert.equal(await marked(k('l2'), T0 + MINUTE, 'once'), false)
        const later = entry('failure_burst', 4, T0 + HOUR + 1)
        assert.deepEqual((await score(k('l'), T0 + HOUR + 1, [{ entry: later, once }])).added, [later])
        assert.deepEqual(
          (await read(k('l'), T0 + HOUR + 2)).map((e) => e.detection),
          ['failure_burst', 'wrong_password', 'failure_burst'],
        )
      })

      it('trims entries at or before `keepSince` and keeps at most `max`, the newest', async () => {
        for (let i = 0; i < 4; i++) await score(k('l'), T0 + i * HOUR, [{ entry: entry(`e${i}`, 1, T0 + i * HOUR) }])
        const trimmed = await score(k('l'), T0 + 4 * HOUR, [{ entry: entry('e4', 1, T0 + 4 * HOUR) }], {
          keepSince: T0 + HOUR,
          windowSince: T0 - 1,
        })
        // e0 and e1 (at keepSince exactly) are gone, and no longer counted in the sum.
        assert.equal(trimmed.sum, 3)
        assert.deepEqual(
          (await read(k('l'), T0 + 4 * HOUR, T0 - 1)).map((e) => e.detection),
          ['e2', 'e3', 'e4'],
        )
        const capped = await score(k('l'), T0 + 5 * HOUR, [{ entry: entry('e5', 1, T0 + 5 * HOUR) }], {
          keepSince: T0 - 1,
          max: 2,
          windowSince: T0 - 1,
        })
        assert.equal(capped.sum, 2)
        assert.deepEqual(
          (await read(k('l'), T0 + 5 * HOUR, T0 - 1)).map((e) => e.detection),
          ['e4', 'e5'],
        )
      })

      it('thresholds: a level is crossed when the sum is strictly above it, once per mark ttl, levels ascending', async () => {
        const thresholds = (): Threshold[] => [
          { level: 10, field: 'alert:10', ttl: HOUR },
          { level: 20, field: 'alert:20', ttl: HOUR },
        ]
        const add = (key: string, points: number, now: number) =>
          score(k(key), now, [{ entry: entry('x', points, now) }], {
            windowSince: now - 2 * HOUR,
            thresholds: thresholds(),
          })
        assert.deepEqual((await add('u', 6, T0)).crossed, [])
        // Exactly 10 is not above 10.
        assert.deepEqual((await add('u', 4, T0 + 1)).crossed, [])
        assert.deepEqual(await add('u', 1, T0 + 2), { added: [entry('x', 1, T0 + 2)], sum: 11, crossed: [10] })
        // Still above 10, but already claimed: no second crossing.
        assert.deepEqual((await add('u', 1, T0 + 3)).crossed, [])
        assert.deepEqual(await add('u', 9, T0 + 4), { added: [entry('x', 9, T0 + 4)], sum: 21, crossed: [20] })
        assert.equal(await marked(k('u'), T0 + 5, 'alert:20'), true)
        assert.equal(await marked(k('v'), T0 + 5, 'alert:20'), false)
        // A jump over both levels at once claims both, ascending.
        assert.deepEqual((await add('v', 30, T0)).crossed, [10, 20])
        // After the marks expire, a sum still above the levels crosses them again.
        assert.deepEqual((await add('u', 1, T0 + HOUR + 10)).crossed, [10, 20])
        // Once the entries have left the window the sum falls back under the levels: nothing to cross.
        const late = T0 + 3 * HOUR
        assert.deepEqual(await add('u', 1, late), { added: [entry('x', 1, late)], sum: 2, crossed: [] })
      })

      it('the ledger expires `ttl` after its last write', async () => {
        await score(k('l'), T0, [{ entry: entry('x', 1, T0) }], { ttl: MINUTE })
        assert.equal((await read(k('l'), T0 + 59 * SECOND, T0 - 1)).length, 1)
        assert.deepEqual(await read(k('l'), T0 + 61 * SECOND, T0 - 1), [])
        assert.equal((await score(k('l'), T0 + 62 * SECOND, [], { windowSince: T0 - 1 })).sum, 0)
      })
    })

    describe('fields', () => {
      it('fields of one key are independent: counts, marks, lists and ledgers do not mix', async () => {
        await hit(k('u'), T0, { field: 'a' })
        await hit(k('u'), T0 + 1, { field: 'a' })
        assert.equal((await hit(k('u'), T0 + 2, { field: 'b' })).count, 1)
        assert.equal((await hit(k('u'), T0 + 3, { field: 'a', add: false })).count, 2)
        assert.equal(await claim(k('u'), T0, MINUTE, 'm1'), true)
        assert.equal(await marked(k('u'), T0, 'm2'), false)
        assert.equal(await claim(k('u'), T0, MINUTE, 'm2'), true)
        await remember(k('u'), 'x', T0, 3, HOUR, 'r1')
        assert.deepEqual(await remember(k('u'), 'x', T0, 3, HOUR, 'r2'), { seen: false, size: 0 })
        await score(k('u'), T0, [{ entry: entry('one', 1, T0) }], { field: 'l1' })
        assert.deepEqual(await read(k('u'), T0, T0 - 1, 'l2'), [])
        assert.equal((await read(k('u'), T0, T0 - 1, 'l1')).length, 1)
        // The same field under another key is another datum.
        assert.equal((await hit(k('other'), T0 + 4, { field: 'a', add: false })).count, 0)
        assert.equal(await marked(k('other'), T0, 'm1'), false)
      })

      it("reset forgets one field and leaves the key's other fields alone", async () => {
        await hit(k('u'), T0, { field: 'a' })
        await hit(k('u'), T0, { field: 'b' })
        await claim(k('u'), T0, HOUR, 'm')
        assert.deepEqual(await run([{ op: 'reset', key: k('u'), field: 'a' }], T0 + 1), [null])
        assert.equal((await hit(k('u'), T0 + 2, { field: 'a', add: false })).count, 0)
        assert.equal((await hit(k('u'), T0 + 2, { field: 'b', add: false })).count, 1)
        assert.equal(await marked(k('u'), T0 + 2, 'm'), true)
        // Resetting every field, then writing again, starts the key over.
        await run(
          [
            { op: 'reset', key: k('u'), field: 'b' },
            { op: 'reset', key: k('u'), field: 'm' },
          ],
          T0 + 3,
        )
        assert.equal(await marked(k('u'), T0 + 4, 'm'), false)
        assert.equal((await hit(k('u'), T0 + 5, { field: 'a' })).count, 1)
      })

      it("each field expires on its own: a short-lived field does not take its key's other fields with it", async () => {
        await hit(k('u'), T0, { field: 'short', ttl: MINUTE })
        await claim(k('u'), T0, HOUR, 'long')
        await score(k('u'), T0, [{ entry: entry('x', 1, T0) }], { ttl: HOUR })
        const later = T0 + 2 * MINUTE
        assert.equal((await hit(k('u'), later, { field: 'short', add: false, since: T0 - 1 })).count, 0)
        assert.equal(await marked(k('u'), later, 'long'), true)
        assert.equal((await read(k('u'), later, T0 - 1)).length, 1)
        // And a long-lived field written later does not revive an expired one.
        await claim(k('u'), later, HOUR, 'another')
        assert.equal((await hit(k('u'), later + 1, { field: 'short', add: false, since: T0 - 1 })).count, 0)
        assert.equal((await hit(k('u'), later + 2, { field: 'short', since: T0 - 1, ttl: MINUTE })).count, 1)
      })
    })

    describe('batches', () => {
      it('ops run in order and each sees the effects of the ones before it', async () => {
        const results = await run(
          [
            { op: 'marked', key: k('c'), field: 'mark' },
            { op: 'claim', key: k('c'), field: 'mark', ttl: MINUTE },
            { op: 'marked', key: k('c'), field: 'mark' },
            { op: 'claim', key: k('c'), field: 'mark', ttl: MINUTE },
            { op: 'hit', key: k('h'), field: 'hits', add: true, since: T0 - 1, ttl: HOUR, member: 'x' },
            { op: 'hit', key: k('h'), field: 'hits', add: false, since: T0 - 1, ttl: HOUR },
            { op: 'reset', key: k('h'), field: 'hits' },
            { op: 'hit', key: k('h'), field: 'hits', add: false, since: T0 - 1, ttl: HOUR },
            {
              op: 'score',
              key: k('l'),
              field: 'ledger',
              entries: [{ entry: entry('x', 2, T0) }],
              keepSince: T0 - HOUR,
              max: 10,
              ttl: HOUR,
              windowSince: T0 - HOUR,
              thresholds: [],
            },
            { op: 'read', key: k('l'), field: 'ledger', since: T0 - 1 },
            { op: 'remember', key: k('r'), field: 'recent', value: 'v', max: 3, ttl: HOUR },
            { op: 'remember', key: k('r'), field: 'recent', value: 'v', max: 3, ttl: HOUR },
          ],
          T0,
        )
        assert.equal(results.length, 12)
        assert.deepEqual(results.slice(0, 4), [false, true, true, false])
        assert.equal((results[4] as HitResult).count, 1)
        assert.equal((results[5] as HitResult).count, 1)
        assert.equal(results[6], null)
        assert.equal((results[7] as HitResult).count, 0)
        assert.deepEqual(results[8], { added: [entry('x', 2, T0)], sum: 2, crossed: [] })
        assert.deepEqual(results[9], [entry('x', 2, T0)])
        assert.deepEqual(results[10], { seen: false, size: 0 })
        assert.deepEqual(results[11], { seen: true, size: 1 })
      })
    })

    describe('concurrency', () => {
      it('50 parallel claims of one key: exactly one wins', async () => {
        const results = await Promise.all(Array.from({ length: 50 }, () => claim(k('c'), T0)))
        assert.equal(results.filter((r) => r === true).length, 1)
        assert.equal(results.filter((r) => r === false).length, 49)
      })

      it('100 parallel hits of one key are all counted, each batch seeing a distinct count', async () => {
        const results = await Promise.all(
          Array.from({ length: 100 }, (_, i) => hit(k('h'), T0, { member: `m${i % 7}`, since: T0 - 1 })),
        )
        assert.deepEqual(
          results.map((r) => r.count).sort((a, b) => a - b),
          Array.from({ length: 100 }, (_, i) => i + 1),
        )
        assert.deepEqual(await hit(k('h'), T0, { add: false, since: T0 - 1, member: 'm0' }), {
          count: 100,
          distinct: 7,
          member: 15,
        })
      })

      it('parallel scores of one ledger: every entry kept, a threshold crossed by exactly one call, a once-entry added once', async () => {
        const threshold: Threshold = { level: 10, field: 'alert', ttl: HOUR }
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            score(
              k('l'),
              T0,
              [
                { entry: entry('x', 1, T0, { i }) },
                { entry: entry('once', 100, T0), once: { field: 'once', ttl: HOUR } },
              ],
              { windowSince: T0 - 1, thresholds: [threshold] },
            ),
          ),
        )
        assert.equal(results.filter((r) => r.crossed.length > 0).length, 1)
        assert.equal(results.flatMap((r) => r.added).filter((e) => e.detection === 'once').length, 1)
        const ledger = await read(k('l'), T0 + 1, T0 - 1)
        assert.equal(ledger.length, 31)
        assert.deepEqual(
          ledger
            .filter((e) => e.detection === 'x')
            .map((e) => e.evidence?.i)
            .sort((a, b) => Number(a) - Number(b)),
          Array.from({ length: 30 }, (_, i) => i),
        )
        assert.equal(Math.max(...results.map((r) => r.sum)), 130)
      })

      it('parallel batches do not interleave: claim-then-mark batches never both see the mark unset', async () => {
        const results = await Promise.all(
          Array.from({ length: 40 }, () =>
            run(
              [
                { op: 'marked', key: k('c'), field: 'mark' },
                { op: 'claim', key: k('c'), field: 'mark', ttl: HOUR },
              ],
              T0,
            ),
          ),
        )
        // In each batch, "not marked yet" and "claimed" must agree: that is what atomic means.
        for (const [wasMarked, won] of results) assert.equal(won, wasMarked === false)
        assert.equal(results.filter(([, won]) => won === true).length, 1)
      })
    })
  })
}
