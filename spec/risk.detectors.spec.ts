/**
 * The detection rules, one row of the points table (issue 3) at a time, driven
 * end to end: real HTTP logins through passport-local, the middleware, the
 * identity boundary and the risk engine with its default in-memory store. Time
 * is the `clock` option, frozen and moved by the test, so windows ("a day",
 * "15 minutes") are exercised exactly, without sleeping. IPs come from
 * X-Forwarded-For with `trust proxy` on, as behind a load balancer.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import { describe, it } from 'node:test'
import type { Request } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { anonEmail, type Options, type RiskAlert, type RiskSnapshot, type Severity } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const T0 = Date.UTC(2030, 0, 7, 9, 0, 0)

const PASSWORD = 'Corr3ct-H0rse-Battery!'
const WRONG = 'Wr0ng-Staple-Guess?'

interface User {
  id: number
  username: string
  email: string
}

const USERS: readonly User[] = [
  { id: 7, username: 'alice', email: 'alice@example.com' },
  { id: 8, username: 'bob', email: 'bob@example.org' },
  { id: 9, username: 'carol', email: 'carol@example.net' },
  { id: 10, username: 'dan', email: 'dan@mailinator.com' },
  { id: 11, username: 'erin', email: 'erin@duck.com' },
]

const CHROME_120 =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'
const CHROME_121 =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36'
const FIREFOX_WIN = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0'
const CHROME_MAC =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'

const IP_A = '203.0.113.10'
const IP_B = '198.51.100.20'
const IP_C = '192.0.2.30'

interface Rig {
  readonly h: Harness
  readonly alerts: RiskAlert[]
  readonly now: () => number
  advance(ms: number): void
  /** POSTs /login and waits until the engine has scored the event. */
  login(username: string, password: string, opts?: { ip?: string; ua?: string; status?: number }): Promise<void>
  /** Sends a login body as is (e.g. a password missing). */
  post(body: Record<string, string>, opts?: { ip?: string; status?: number }): Promise<void>
  /** `trackEvent` for user `id` through a route of the app. */
  report(id: number, severity: Severity | undefined, opts?: { ip?: string }): Promise<void>
  risk(userKey: string): Promise<RiskSnapshot>
  close(): Promise<void>
}

const rig = async (variant: Variant, options: Partial<Options> = {}): Promise<Rig> => {
  let now = T0
  const alerts: RiskAlert[] = []
  const h = harness(
    variant,
    ({ app, passport, sqreen }) => {
      // Behind a proxy: X-Forwarded-For gives each request the client IP the test chooses.
      app.set('trust proxy', true)
      passport.use(
        new LocalStrategy((username, password, done) => {
          const user = USERS.find((u) => u.username === username)
          done(null, user !== undefined && password === PASSWORD ? user : false)
        }),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (req, res) => {
        res.json({ id: (req.user as User).id })
      })
      app.post('/report', (req: Request, res) => {
        const body = req.body as { id: number; severity?: Severity }
        sqreen.trackEvent(req, 'sql_injection', {
          identity: { id: body.id },
          ...(body.severity === undefined ? {} : { severity: body.severity }),
        })
        res.json({ ok: true })
      })
    },
    { clock: () => now, onAlert: (alert) => void alerts.push(alert), ...options },
  )
  const server: Server = await new Promise((resolve) => {
    const s = h.app.listen(0, '127.0.0.1', () => resolve(s))
  })
  let expected = 0
  // Every request yields exactly one event; once it reached onEvent the engine (which runs
  // before onEvent, on the memory store's already-resolved promises) finishes within the
  // same turn, so one setImmediate is enough for its writes to be visible.
  const settled = async (): Promise<void> => {
    expected++
    await h.log.waitFor(expected)
    await new Promise((resolve) => setImmediate(resolve))
  }
  return {
    h,
    alerts,
    now: () => now,
    advance(ms) {
      now += ms
    },
    async login(username, password, opts = {}) {
      const res = await request(server)
        .post('/login')
        .set('X-Forwarded-For', opts.ip ?? IP_A)
        .set('User-Agent', opts.ua ?? CHROME_120)
        .send({ username, password })
      assert.equal(res.status, opts.status ?? (password === PASSWORD ? 200 : 401))
      await settled()
    },
    async post(body, opts = {}) {
      const res = await request(server)
        .post('/login')
        .set('X-Forwarded-For', opts.ip ?? IP_A)
        .set('User-Agent', CHROME_120)
        .send(body)
      assert.equal(res.status, opts.status ?? 401)
      await settled()
    },
    async report(id, severity, opts = {}) {
      const res = await request(server)
        .post('/report')
        .set('X-Forwarded-For', opts.ip ?? IP_A)
        .set('User-Agent', CHROME_120)
        .send(severity === undefined ? { id } : { id, severity })
      assert.equal(res.status, 200)
      await settled()
    },
    risk: (userKey) => h.sqreen.risk(userKey),
    async close() {
      await h.sqreen.close()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Entries of one detection on a snapshot, oldest first. */
const of = (snapshot: RiskSnapshot, detection: string) => snapshot.entries.filter((e) => e.detection === detection)

const times = async (n: number, fn: (i: number) => Promise<void>): Promise<void> => {
  for (let i = 0; i < n; i++) await fn(i)
}

for (const variant of variants) {
  describe(`risk detectors (${variant.name})`, () => {
    it('wrong password: +1 per failure, at most +5 within a day, again the next day', async () => {
      const r = await rig(variant)
      try {
        await times(5, async () => {
          await r.login('alice', WRONG)
          r.advance(MINUTE)
        })
        let wrong = of(await r.risk('login:alice'), 'wrong_password')
        assert.deepEqual(
          wrong.map((e) => [e.points, e.at]),
          [0, 1, 2, 3, 4].map((i) => [1, T0 + i * MINUTE]),
        )
        await times(4, async () => {
          await r.login('alice', WRONG)
          r.advance(MINUTE)
        })
        wrong = of(await r.risk('login:alice'), 'wrong_password')
        assert.equal(wrong.length, 5, 'the 6th to 9th failures of the day add nothing')
        // A day after the first burst of failures, the cap has room again.
        r.advance(DAY)
        await r.login('alice', WRONG)
        wrong = of(await r.risk('login:alice'), 'wrong_password')
        assert.equal(wrong.length, 6)
        assert.equal(wrong[5]?.at, r.now())
        assert.equal(wrong[5]?.points, 1)
      } finally {
        await r.close()
      }
    })

    it("a login's failures before its first success join the user's: daily cap, burst window and once-marks carry over", async () => {
      const r = await rig(variant)
      try {
        // Five typos under the login (5 x wrong_password + failure_burst = 9 points), then the
        // right password: the login is now known to be alice (id:7) and its ledger is hers.
        await times(5, async () => {
          await r.login('alice', WRONG)
          r.advance(MINUTE)
        })
        await r.login('alice', PASSWORD)
        r.advance(MINUTE)
        // Two more typos the same day: the 6th and 7th failures of her day, in the same burst.
        await times(2, async () => {
          await r.login('alice', WRONG)
          r.advance(MINUTE)
        })
        const alice = await r.risk('id:7')
        assert.deepEqual(
          alice.entries.map((e) => e.detection),
          [...Array(5).fill('wrong_password'), 'failure_burst'],
          'no wrong_password past the cap, no second burst',
        )
        assert.equal(alice.rise24h, 9)
        assert.deepEqual(r.alerts, [], 'a rise of 9 raises no alert (without the carry-over: 11)')
        assert.deepEqual((await r.risk('login:alice')).entries, [])
        // The window moved with its times: a day after the first typos, the cap has room again.
        r.advance(DAY)
        await r.login('alice', WRONG)
        assert.equal(of(await r.risk('id:7'), 'wrong_password').length, 6)
      } finally {
        await r.close()
      }
    })

    it('missing credentials (an empty password) are not wrong passwords and add nothing', async () => {
      const r = await rig(variant)
      try {
        await times(6, () => r.post({ username: 'alice' }, { status: 400 }))
        await r.post({}, { status: 400 })
        assert.ok(r.h.log.events.every((e) => e.type === 'login.failed' && e.reason === 'missing_credentials'))
        assert.equal(r.h.log.events[0]?.userKey, 'login:alice')
        assert.deepEqual((await r.risk('login:alice')).entries, [])
        // Control: wrong passwords on the same login do score. Had the 7 missing-credential
        // failures been counted, the daily cap would be spent (no wrong_password) and the
        // first of these would already make a burst of 5 within 15 minutes.
        await r.login('alice', WRONG)
        assert.deepEqual(
          (await r.risk('login:alice')).entries.map((e) => e.detection),
          ['wrong_password'],
        )
        await times(4, () => r.login('alice', WRONG))
        const alice = await r.risk('login:alice')
        assert.equal(of(alice, 'wrong_password').length, 5)
        assert.deepEqual(
          of(alice, 'failure_burst').map((e) => e.evidence?.failures15m),
          [5],
        )
      } finally {
        await r.close()
      }
    })

    it('failure burst: +4 at 5 failures within 15 minutes from any IPs, once per 15-minute window', async () => {
      const r = await rig(variant)
      const ip = (i: number) => `198.51.100.${i + 1}`
      try {
        await times(4, async (i) => {
          await r.login('alice', WRONG, { ip: ip(i) })
          r.advance(MINUTE)
        })
        assert.equal(of(await r.risk('login:alice'), 'failure_burst').length, 0)
        await r.login('alice', WRONG, { ip: ip(4) })
        let burst = of(await r.risk('login:alice'), 'failure_burst')
        assert.deepEqual(
          burst.map((e) => [e.points, e.evidence?.failures15m]),
          [[4, 5]],
        )
        // More failures in the same window: no second burst.
        await times(3, async (i) => {
          r.advance(MINUTE)
          await r.login('alice', WRONG, { ip: ip(5 + i) })
        })
        assert.equal(of(await r.risk('login:alice'), 'failure_burst').length, 1)
        // Later, a new window: 4 failures are not a burst (the old ones left the window), 5 are.
        r.advance(40 * MINUTE)
        await times(4, async (i) => {
          await r.login('alice', WRONG, { ip: ip(10 + i) })
          r.advance(MINUTE)
        })
        assert.equal(of(await r.risk('login:alice'), 'failure_burst').length, 1)
        await r.login('alice', WRONG, { ip: ip(20) })
        burst = of(await r.risk('login:alice'), 'failure_burst')
        assert.equal(burst.length, 2)
        assert.equal(burst[1]?.at, r.now())
        // All from different IPs: no brute force.
        assert.equal(of(await r.risk('login:alice'), 'brute_force').length, 0)
      } finally {
        await r.close()
      }
    })

    it('brute force: +15 at 10 failures in a row from one IP, once', async () => {
      const r = await rig(variant)
      try {
        await times(9, () => r.login('alice', WRONG, { ip: IP_A }))
        assert.equal(of(await r.risk('login:alice'), 'brute_force').length, 0)
        await r.login('alice', WRONG, { ip: IP_A })
        const bf = of(await r.risk('login:alice'), 'brute_force')
        assert.equal(bf.length, 1)
        assert.equal(bf[0]?.points, 15)
        assert.equal(bf[0]?.evidence?.consecutive, 10)
        // The IP is shown truncated to its /24.
        assert.equal(bf[0]?.evidence?.ip, '203.0.113.0/24')
        await times(3, () => r.login('alice', WRONG, { ip: IP_A }))
        assert.equal(of(await r.risk('login:alice'), 'brute_force').length, 1)
      } finally {
        await r.close()
      }
    })

    it('brute force: a success resets the run; 10 failures spread over 2 IPs are not one', async () => {
      const r = await rig(variant)
      try {
        // Failures before the first success are counted under the login, later ones under the
        // user: a success must end the run in both cases.
        await times(9, () => r.login('alice', WRONG, { ip: IP_A }))
        await r.login('alice', PASSWORD, { ip: IP_A })
        await times(9, () => r.login('alice', WRONG, { ip: IP_A }))
        await r.login('alice', PASSWORD, { ip: IP_A })
        await times(9, () => r.login('alice', WRONG, { ip: IP_A }))
        // 27 failures from one IP, but never 10 without a success in between.
        assert.equal(of(await r.risk('id:7'), 'brute_force').length, 0)
        await r.login('alice', WRONG, { ip: IP_A })
        assert.equal(of(await r.risk('id:7'), 'brute_force').length, 1)

        await times(10, (i) => r.login('bob', WRONG, { ip: i % 2 === 0 ? IP_B : IP_C }))
        const bob = await r.risk('login:bob')
        assert.equal(of(bob, 'brute_force').length, 0)
        // The failures were counted (a burst), just not as a one-IP run.
        assert.equal(of(bob, 'failure_burst').length, 1)
      } finally {
        await r.close()
      }
    })

    it('distributed guessing: +10 at 20 failures from >= 3 IPs within 24 h, once; not from 2 IPs', async () => {
      const r = await rig(variant)
      const three = [IP_A, IP_B, IP_C]
      try {
        await times(19, async (i) => {
          await r.login('alice', WRONG, { ip: three[i % 3] as string })
          r.advance(10 * MINUTE)
        })
        assert.equal(of(await r.risk('login:alice'), 'distributed_guessing').length, 0)
        await r.login('alice', WRONG, { ip: IP_B })
        let dg = of(await r.risk('login:alice'), 'distributed_guessing')
        assert.deepEqual(
          dg.map((e) => [e.points, e.evidence?.failures24h, e.evidence?.ips]),
          [[10, 20, 3]],
        )
        await times(3, () => r.login('alice', WRONG, { ip: IP_C }))
        dg = of(await r.risk('login:alice'), 'distributed_guessing')
        assert.equal(dg.length, 1)
        // From only two IPs (other addresses than alice's, so no IP-level state is shared).
        await times(24, (i) => r.login('bob', WRONG, { ip: i % 2 === 0 ? '198.51.100.200' : '198.51.100.201' }))
        const bob = await r.risk('login:bob')
        assert.equal(of(bob, 'distributed_guessing').length, 0)
        assert.equal(of(bob, 'brute_force').length, 1, 'control: the failures were counted')
      } finally {
        await r.close()
      }
    })

    it('stuffing: an IP failing for >= 5 logins within 10 min is flagged: failures from it +5, a success +20', async () => {
      const r = await rig(variant)
      const S = '192.0.2.66'
      try {
        await times(4, (i) => r.login(`victim${i}`, WRONG, { ip: S }))
        // Not flagged yet: a success from it is harmless.
        await r.login('bob', PASSWORD, { ip: S })
        assert.equal(of(await r.risk('id:8'), 'success_from_flagged_ip').length, 0)
        assert.equal(of(await r.risk('login:victim3'), 'stuffing_target').length, 0)
        // The fifth distinct login flags the IP, and that failure already counts.
        await r.login('victim4', WRONG, { ip: S })
        assert.equal(of(await r.risk('login:victim4'), 'stuffing_target').length, 1)
        await r.login('alice', WRONG, { ip: S })
        await r.login('alice', WRONG, { ip: S })
        const target = of(await r.risk('login:alice'), 'stuffing_target')
        assert.equal(target.length, 1, 'once per window, not on every failure')
        assert.equal(target[0]?.points, 5)
        assert.equal(target[0]?.evidence?.ip, '192.0.2.0/24')
        await r.login('bob', PASSWORD, { ip: S })
        const flagged = of(await r.risk('id:8'), 'success_from_flagged_ip')
        assert.deepEqual(
          flagged.map((e) => e.points),
          [20],
        )
        // Another IP is not flagged.
        await r.login('carol', PASSWORD, { ip: IP_C })
        await r.login('carol', WRONG, { ip: IP_C })
        const carol = await r.risk('id:9')
        assert.equal(of(carol, 'success_from_flagged_ip').length + of(carol, 'stuffing_target').length, 0)
      } finally {
        await r.close()
      }
    })

    it('advanced mode: IP state is kept under keyed hashes of the addresses, and the IP detections work the same', async () => {
      const secret = 'detectors-spec-secret-0123456789'
      const r = await rig(variant, { mode: 'advanced', secret, identify: (u: User) => ({ id: u.id }) })
      const S = '192.0.2.66'
      try {
        await times(5, (i) => r.login(`victim${i}`, WRONG, { ip: S }))
        await r.login('bob', PASSWORD, { ip: S })
        assert.deepEqual(
          of(await r.risk('id:8'), 'success_from_flagged_ip').map((e) => [e.points, e.evidence?.ip]),
          [[20, '192.0.2.0/24']],
          'the fifth distinct login flagged the address',
        )
        // Ten in a row from one address are a brute force; from another address, not.
        await times(10, () => r.login('alice', WRONG, { ip: IP_A }))
        await times(10, (i) => r.login('carol', WRONG, { ip: i % 2 === 0 ? IP_A : IP_B }))
        // Failed logins are keyed by HMAC: the 6th failure is alice's first, the 16th carol's.
        const failed = r.h.log.events.filter((e) => e.type === 'login.failed')
        const [alice, carol] = [failed[5]?.userKey, failed[15]?.userKey] as [string, string]
        assert.match(alice, /^login:/)
        assert.notEqual(alice, carol)
        assert.equal(of(await r.risk(alice), 'brute_force').length, 1)
        assert.equal(of(await r.risk(carol), 'brute_force').length, 0)
      } finally {
        await r.close()
      }
    })

    it('stuffing: 5 distinct logins spread over more than 10 minutes do not flag the IP', async () => {
      const r = await rig(variant)
      const S = '192.0.2.77'
      try {
        await times(4, (i) => r.login(`victim${i}`, WRONG, { ip: S }))
        r.advance(11 * MINUTE)
        await r.login('victim4', WRONG, { ip: S })
        await r.login('bob', PASSWORD, { ip: S })
        assert.equal(of(await r.risk('login:victim4'), 'stuffing_target').length, 0)
        assert.equal(of(await r.risk('id:8'), 'success_from_flagged_ip').length, 0)
        // Control: four more distinct logins within 10 minutes of the fifth flag it.
        await times(4, (i) => r.login(`other${i}`, WRONG, { ip: S }))
        await r.login('bob', PASSWORD, { ip: S })
        assert.equal(of(await r.risk('id:8'), 'success_from_flagged_ip').length, 1)
      } finally {
        await r.close()
      }
    })

    it('stuffing: an IP with >= 100 failures within 24 h is flagged, even for one login', async () => {
      const r = await rig(variant)
      const S = '192.0.2.88'
      try {
        await times(99, async () => {
          await r.login('mallory', WRONG, { ip: S })
          r.advance(5 * MINUTE)
        })
        await r.login('bob', PASSWORD, { ip: S })
        assert.equal(of(await r.risk('id:8'), 'success_from_flagged_ip').length, 0)
        await r.login('mallory', WRONG, { ip: S })
        await r.login('carol', PASSWORD, { ip: S })
        assert.equal(of(await r.risk('id:9'), 'success_from_flagged_ip').length, 1)
      } finally {
        await r.close()
      }
    })

    it('success after brute force: +20 within 24 h of the brute force, not after', async () => {
      const r = await rig(variant)
      try {
        await times(10, () => r.login('alice', WRONG, { ip: IP_A }))
        r.advance(23 * HOUR)
        await r.login('alice', PASSWORD, { ip: IP_A })
        const alice = await r.risk('id:7')
        // The login's ledger came over to the user: the brute force and the success both count.
        assert.equal(of(alice, 'brute_force').length, 1)
        assert.deepEqual(
          of(alice, 'success_after_brute_force').map((e) => [e.points, e.at]),
          [[20, r.now()]],
        )
        await r.login('alice', PASSWORD, { ip: IP_A })
        assert.equal(of(await r.risk('id:7'), 'success_after_brute_force').length, 1)

        await times(10, () => r.login('bob', WRONG, { ip: IP_B }))
        r.advance(DAY)
        await r.login('bob', PASSWORD, { ip: IP_B })
        const bob = await r.risk('id:8')
        assert.equal(of(bob, 'brute_force').length, 1)
        assert.equal(of(bob, 'success_after_brute_force').length, 0)
      } finally {
        await r.close()
      }
    })

    it('new device: +2 for a user-agent family unseen in recent successes; the first success is the baseline', async () => {
      const r = await rig(variant)
      const devices = async () => of(await r.risk('id:7'), 'new_device').map((e) => e.evidence?.device)
      try {
        await r.login('alice', PASSWORD, { ua: CHROME_120 })
        assert.deepEqual(await devices(), [], 'the first success sets the baseline')
        await r.login('alice', PASSWORD, { ua: CHROME_121 })
        assert.deepEqual(await devices(), [], 'a browser update is not a new device')
        await r.login('alice', PASSWORD, { ua: FIREFOX_WIN })
        assert.deepEqual(await devices(), ['Firefox on Windows'])
        await r.login('alice', PASSWORD, { ua: FIREFOX_WIN })
        await r.login('alice', PASSWORD, { ua: CHROME_120 })
        assert.deepEqual(await devices(), ['Firefox on Windows'])
        await r.login('alice', PASSWORD, { ua: CHROME_MAC })
        assert.deepEqual(await devices(), ['Firefox on Windows', 'Chrome on macOS'])
        assert.ok(of(await r.risk('id:7'), 'new_device').every((e) => e.points === 2))
      } finally {
        await r.close()
      }
    })

    it('new device: a family is remembered for the last 20 successes, repeats counted (not the last 20 families)', async () => {
      const r = await rig(variant)
      const devices = async () => of(await r.risk('id:7'), 'new_device').map((e) => e.evidence?.device)
      try {
        await r.login('alice', PASSWORD, { ua: CHROME_120 })
        await r.login('alice', PASSWORD, { ua: FIREFOX_WIN })
        assert.deepEqual(await devices(), ['Firefox on Windows'])
        // Firefox is the 20th most recent success when it comes back: still known.
        await times(19, () => r.login('alice', PASSWORD, { ua: CHROME_120 }))
        await r.login('alice', PASSWORD, { ua: FIREFOX_WIN })
        assert.deepEqual(await devices(), ['Firefox on Windows'])
        // 20 Chrome successes push it out: Firefox is a new device again.
        await times(20, () => r.login('alice', PASSWORD, { ua: CHROME_120 }))
        await r.login('alice', PASSWORD, { ua: FIREFOX_WIN })
        assert.deepEqual(await devices(), ['Firefox on Windows', 'Firefox on Windows'])
      } finally {
        await r.close()
      }
    })

    it('disposable e-mail domain +5 once and privacy relay +1 once, in advanced mode through anonEmail', async () => {
      const r = await rig(variant, {
        mode: 'advanced',
        secret: 'a-test-secret-of-at-least-16-bytes',
        identify: (user: User) => ({ id: user.id, email: anonEmail(user.id, user.email) }),
      })
      try {
        for (const name of ['dan', 'erin', 'alice']) {
          await r.login(name, PASSWORD)
          r.advance(HOUR)
          await r.login(name, PASSWORD)
        }
        assert.deepEqual(r.h.log.events[0]?.identity, { id: 10, email: 'anon-10@mailinator.com' })
        const dan = await r.risk('id:10')
        assert.deepEqual(
          dan.entries.map((e) => [e.detection, e.points, e.evidence?.domain]),
          [['disposable_email', 5, 'mailinator.com']],
        )
        const erin = await r.risk('id:11')
        assert.deepEqual(
          erin.entries.map((e) => [e.detection, e.points, e.evidence?.domain]),
          [['relay_email', 1, 'duck.com']],
        )
        assert.deepEqual((await r.risk('id:7')).entries, [])
      } finally {
        await r.close()
      }
    })

    it('trackEvent: low 2, medium 5, high 10, critical 20, and every call scores', async () => {
      const r = await rig(variant, { trigger: false })
      try {
        for (const severity of ['low', 'medium', 'high', 'critical', 'critical', undefined] as const) {
          await r.report(7, severity)
        }
        const entries = (await r.risk('id:7')).entries
        assert.deepEqual(
          entries.map((e) => [e.detection, e.points, e.evidence?.name]),
          [
            ['attack_low', 2, 'sql_injection'],
            ['attack_medium', 5, 'sql_injection'],
            ['attack_high', 10, 'sql_injection'],
            ['attack_critical', 20, 'sql_injection'],
            ['attack_critical', 20, 'sql_injection'],
            // No severity given: low.
            ['attack_low', 2, 'sql_injection'],
          ],
        )
        assert.equal((await r.risk('id:7')).rise24h, 59)
      } finally {
        await r.close()
      }
    })

    it('the points option overrides a detection, and false switches it off', async () => {
      const r = await rig(variant, {
        points: { wrong_password: 3, failure_burst: false, brute_force: 30, attack_high: false },
      })
      try {
        await times(10, () => r.login('alice', WRONG, { ip: IP_A }))
        const alice = await r.risk('login:alice')
        assert.deepEqual(
          alice.entries.map((e) => [e.detection, e.points]),
          [
            ['wrong_password', 3],
            ['wrong_password', 3],
            ['wrong_password', 3],
            ['wrong_password', 3],
            ['wrong_password', 3],
            ['brute_force', 30],
          ],
        )
        assert.equal(alice.rise24h, 45)
        await r.report(8, 'high')
        await r.report(8, 'medium')
        assert.deepEqual(
          (await r.risk('id:8')).entries.map((e) => [e.detection, e.points]),
          [['attack_medium', 5]],
        )
      } finally {
        await r.close()
      }
    })

    it('IPv6 clients in one /56 share IP-level state; another /56 does not', async () => {
      const r = await rig(variant)
      try {
        // Same /56 (2001:db8:0:1200::/56), different /64s: one attacker rotating addresses.
        await times(10, (i) =>
          r.login('alice', WRONG, { ip: i % 2 === 0 ? '2001:db8:0:1200::1' : '2001:db8:0:12ff:a::2' }),
        )
        const bf = of(await r.risk('login:alice'), 'brute_force')
        assert.equal(bf.length, 1)
        assert.equal(bf[0]?.evidence?.ip, '2001:db8:0:1200::/56')
        // Two different /56s: two sources, no one-IP run.
        await times(10, (i) => r.login('bob', WRONG, { ip: i % 2 === 0 ? '2001:db8:0:1300::1' : '2001:db8:0:1400::1' }))
        assert.equal(of(await r.risk('login:bob'), 'brute_force').length, 0)
        // IP-level stuffing state too: 5 logins failing from 5 addresses of one /56 flag it.
        await times(5, (i) => r.login(`victim${i}`, WRONG, { ip: `2001:db8:0:5500::${i + 1}` }))
        await r.login('carol', PASSWORD, { ip: '2001:db8:0:55aa::9' })
        assert.equal(of(await r.risk('id:9'), 'success_from_flagged_ip').length, 1)
      } finally {
        await r.close()
      }
    })
  })
}
