/**
 * The ledger maths and the "user risk increase" trigger, end to end over HTTP:
 * standing score decay (half-life) and cap, the 24-hour rise, the 30-day
 * retention, riskIncrease() validation, and when alerts fire (strictly above the
 * level, once per user per window, escalations once each, never mixed between
 * users). Time is the frozen `clock` option, moved by the test.
 *
 * Points come from `trackEvent` severities (exact, one entry per call) so each
 * step is easy to follow. This is engine behaviour, not Express/Passport
 * behaviour: one variant is enough (risk.detectors covers both).
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import { describe, it } from 'node:test'
import type { Request } from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import {
  type Options,
  type RiskAlert,
  type RiskSnapshot,
  riskIncrease,
  type Severity,
  SqreenAuthError,
  sqreenAuth,
} from '../lib/index.js'
import { type Harness, harness, variants } from './helpers/apps.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const T0 = Date.UTC(2030, 0, 7, 9, 0, 0)
const PASSWORD = 'Corr3ct-H0rse-Battery!'
const WRONG = 'Wr0ng-Staple-Guess?'
const variant = variants[0] as (typeof variants)[number]

interface Rig {
  readonly h: Harness
  readonly alerts: RiskAlert[]
  advance(ms: number): void
  /** `trackEvent` for user `id`, waiting until the engine has scored it. */
  report(id: number, severity: Severity): Promise<void>
  /** The same without waiting for the engine (for parallel traffic). */
  sendReport(id: number, severity: Severity): Promise<unknown>
  sendLogin(username: string, password: string, ip: string): Promise<unknown>
  /** Waits until `n` events in all reached the engine and were scored. */
  scored(n: number): Promise<void>
  risk(userKey: string): Promise<RiskSnapshot>
  close(): Promise<void>
}

const rig = async (options: Partial<Options> = {}): Promise<Rig> => {
  let now = T0
  const alerts: RiskAlert[] = []
  const h = harness(
    variant,
    ({ app, passport, sqreen }) => {
      app.set('trust proxy', true)
      passport.use(
        new LocalStrategy((username, password, done) =>
          done(null, username === 'alice' && password === PASSWORD ? { id: 7, username } : false),
        ),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => {
        res.json({ ok: true })
      })
      app.post('/report', (req: Request, res) => {
        const body = req.body as { id: number; severity: Severity }
        sqreen.trackEvent(req, 'sql_injection', { identity: { id: body.id }, severity: body.severity })
        res.json({ ok: true })
      })
    },
    { clock: () => now, onAlert: (alert) => void alerts.push(alert), ...options },
  )
  const server: Server = await new Promise((resolve) => {
    const s = h.app.listen(0, '127.0.0.1', () => resolve(s))
  })
  let sent = 0
  const sendReport = (id: number, severity: Severity) => {
    sent++
    return request(server).post('/report').send({ id, severity }).expect(200)
  }
  // The engine runs before onEvent and, on the memory store, completes within the turn
  // in which the event reached onEvent: one setImmediate makes its writes visible.
  const scored = async (n: number): Promise<void> => {
    await h.log.waitFor(n)
    await new Promise((resolve) => setImmediate(resolve))
  }
  return {
    h,
    alerts,
    advance(ms) {
      now += ms
    },
    async report(id, severity) {
      await sendReport(id, severity)
      await scored(sent)
    },
    sendReport,
    sendLogin(username, password, ip) {
      sent++
      return request(server)
        .post('/login')
        .set('X-Forwarded-For', ip)
        .send({ username, password })
        .expect(password === PASSWORD ? 200 : 401)
    },
    scored,
    risk: (userKey) => h.sqreen.risk(userKey),
    async close() {
      await h.sqreen.close()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

const assertCode = (fn: () => unknown, pattern: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SqreenAuthError, `not a SqreenAuthError: ${String(err)}`)
    assert.equal(err.code, 'ERR_SQREEN_OPTION_TYPE')
    assert.match(err.message, pattern)
    return true
  })
}

describe('risk ledger: standing score, rise and retention', () => {
  it('the standing score halves every 7 days by default', async () => {
    const r = await rig()
    try {
      await r.report(7, 'critical')
      let risk = await r.risk('id:7')
      assert.deepEqual([risk.score, risk.rise24h], [20, 20])
      r.advance(7 * DAY)
      risk = await r.risk('id:7')
      assert.deepEqual([risk.score, risk.rise24h], [10, 0])
      r.advance(7 * DAY)
      assert.equal((await r.risk('id:7')).score, 5)
      // Half a half-life: 20 * 2^-0.5 from a second entry, rounded to cents.
      await r.report(7, 'critical')
      r.advance(3.5 * DAY)
      assert.equal((await r.risk('id:7')).score, Math.round((5 * 2 ** -0.5 + 20 * 2 ** -0.5) * 100) / 100)
    } finally {
      await r.close()
    }
  })

  it('the halfLife option sets the decay (a duration string or milliseconds)', async () => {
    const byString = await rig({ halfLife: '1d' })
    const byMs = await rig({ halfLife: 12 * HOUR })
    try {
      await byString.report(7, 'critical')
      await byMs.report(7, 'critical')
      byString.advance(DAY)
      byMs.advance(DAY)
      assert.equal((await byString.risk('id:7')).score, 10)
      assert.equal((await byMs.risk('id:7')).score, 5)
    } finally {
      await byString.close()
      await byMs.close()
    }
  })

  it('the standing score is capped at maxScore (100 by default); the rise is not', async () => {
    const capped = await rig()
    const custom = await rig({ maxScore: 30 })
    try {
      for (let i = 0; i < 6; i++) {
        await capped.report(7, 'critical')
        await custom.report(7, 'critical')
      }
      assert.deepEqual([(await capped.risk('id:7')).score, (await capped.risk('id:7')).rise24h], [100, 120])
      assert.deepEqual([(await custom.risk('id:7')).score, (await custom.risk('id:7')).rise24h], [30, 120])
      // Decay applies before the cap: 120 -> 60 after a half-life, under the default cap.
      capped.advance(7 * DAY)
      assert.equal((await capped.risk('id:7')).score, 60)
    } finally {
      await capped.close()
      await custom.close()
    }
  })

  it('rise24h counts only the points added in the last 24 hours', async () => {
    const r = await rig()
    try {
      await r.report(7, 'critical')
      r.advance(23 * HOUR)
      await r.report(7, 'high')
      assert.equal((await r.risk('id:7')).rise24h, 30)
      r.advance(HOUR - 1)
      assert.equal((await r.risk('id:7')).rise24h, 30)
      // Exactly 24 hours after the first entry, it is out of the window (still on the ledger).
      r.advance(1)
      const risk = await r.risk('id:7')
      assert.equal(risk.rise24h, 10)
      assert.equal(risk.entries.length, 2)
      assert.ok(risk.score > 10 && risk.score < 30, `decayed score ${risk.score}`)
    } finally {
      await r.close()
    }
  })

  it('entries stay oldest first when earlier failures of a login are merged into a user who has entries', async () => {
    const r = await rig({ trigger: false })
    try {
      // Failures under the login (not yet linked to id 7), then an app report for id 7, then the success.
      await r.sendLogin('alice', WRONG, '203.0.113.7')
      await r.scored(1)
      r.advance(HOUR)
      await r.report(7, 'low')
      r.advance(HOUR)
      await r.sendLogin('alice', PASSWORD, '203.0.113.7')
      await r.scored(3)
      const entries = (await r.risk('id:7')).entries
      assert.deepEqual(
        entries.map((e) => e.detection),
        ['wrong_password', 'attack_low'],
      )
      const times = entries.map((e) => e.at)
      assert.deepEqual(
        times,
        [...times].sort((a, b) => a - b),
        'RiskSnapshot.entries is documented oldest first',
      )
    } finally {
      await r.close()
    }
  })

  it('entries older than the 30-day retention disappear', async () => {
    const r = await rig()
    try {
      await r.report(7, 'critical')
      r.advance(30 * DAY - 1)
      assert.equal((await r.risk('id:7')).entries.length, 1)
      r.advance(1)
      let risk = await r.risk('id:7')
      assert.deepEqual([risk.entries.length, risk.score, risk.rise24h], [0, 0, 0])
      r.advance(DAY)
      await r.report(7, 'low')
      risk = await r.risk('id:7')
      assert.deepEqual(
        risk.entries.map((e) => e.detection),
        ['attack_low'],
      )
      assert.equal(risk.score, 2)
    } finally {
      await r.close()
    }
  })
})

describe('riskIncrease()', () => {
  it('rejects bad settings with a SqreenAuthError code', () => {
    assertCode(() => riskIncrease({ points: -1 }), /points/)
    assertCode(() => riskIncrease({ points: Number.NaN }), /points/)
    assertCode(() => riskIncrease({ points: '10' as unknown as number }), /points/)
    assertCode(() => riskIncrease({ escalate: [10] }), /escalate/)
    assertCode(() => riskIncrease({ points: 20, escalate: [30, 15] }), /escalate/)
    assertCode(() => riskIncrease({ escalate: [Number.POSITIVE_INFINITY] }), /escalate/)
    assertCode(() => riskIncrease({ within: 'soon' }), /within/)
    assertCode(() => riskIncrease({ within: '24x' }), /within/)
    assertCode(() => riskIncrease({ within: '' }), /within/)
    assertCode(() => riskIncrease({ within: 0 }), /within/)
    assertCode(() => riskIncrease({ within: -HOUR }), /within/)
    // Something that is not a trigger at all, given to sqreenAuth.
    assertCode(() => sqreenAuth({ passport: { authenticate() {}, _strategy() {} }, trigger: {} as never }), /trigger/)
  })

  it('accepts durations and sorts escalation levels', () => {
    assert.deepEqual(riskIncrease(), { kind: 'riskIncrease', points: 10, withinMs: DAY, escalate: [] })
    assert.equal(riskIncrease({ within: '90m' }).withinMs, 90 * MINUTE)
    assert.equal(riskIncrease({ within: 1_500 }).withinMs, 1_500)
    assert.deepEqual(riskIncrease({ points: 5, escalate: [40, 20] }).escalate, [20, 40])
  })
})

describe('the risk-increase trigger', () => {
  it('fires strictly above 10: exactly 10 points do not alert, 11 do', async () => {
    const r = await rig({ points: { attack_low: 1 } })
    try {
      await r.report(7, 'high')
      assert.equal((await r.risk('id:7')).rise24h, 10)
      assert.equal(r.alerts.length, 0)
      await r.report(7, 'low')
      assert.equal(r.alerts.length, 1)
      const [alert] = r.alerts
      assert.equal(alert?.type, 'user.risk.increased')
      assert.equal(alert?.userKey, 'id:7')
      assert.deepEqual(alert?.identity, { id: 7 })
      assert.equal(alert?.level, 10)
      assert.equal(alert?.escalation, false)
      assert.equal(alert?.rise, 11)
      assert.equal(alert?.windowMs, DAY)
      assert.equal(alert?.at, new Date(T0).toISOString())
      assert.deepEqual(
        alert?.detections.map((d) => [d.detection, d.points]),
        [
          ['attack_high', 10],
          ['attack_low', 1],
        ],
      )
    } finally {
      await r.close()
    }
  })

  it('fires once per user within the window, and again once the window has passed', async () => {
    const r = await rig({ points: { attack_low: 1 } })
    try {
      await r.report(7, 'high')
      await r.report(7, 'low')
      assert.equal(r.alerts.length, 1)
      r.advance(HOUR)
      await r.report(7, 'critical')
      r.advance(22 * HOUR)
      await r.report(7, 'high')
      assert.equal(r.alerts.length, 1, 'no second alert within 24 h')
      // Another user is alerted independently.
      await r.report(8, 'critical')
      assert.deepEqual(
        r.alerts.map((a) => a.userKey),
        ['id:7', 'id:8'],
      )
      // T0 + 24h30: the first alert's window is over, and the last 24 h still hold 30 points.
      r.advance(90 * MINUTE)
      await r.report(7, 'low')
      assert.equal(r.alerts.length, 3)
      const again = r.alerts[2]
      assert.equal(again?.userKey, 'id:7')
      assert.equal(again?.rise, 31)
      assert.deepEqual(
        again?.detections.map((d) => d.detection),
        ['attack_critical', 'attack_high', 'attack_low'],
      )
    } finally {
      await r.close()
    }
  })

  it('escalation levels fire once each; a jump over several levels alerts once, at the highest', async () => {
    const r = await rig({
      trigger: riskIncrease({ escalate: [20, 40] }),
      points: { attack_low: 1, attack_critical: 25 },
    })
    try {
      for (const severity of ['high', 'low', 'high', 'high', 'high', 'high', 'high'] as const) {
        await r.report(7, severity)
      }
      // Running sums: 10, 11, 21, 31, 41, 51, 61.
      assert.deepEqual(
        r.alerts.map((a) => [a.level, a.escalation, a.rise]),
        [
          [10, false, 11],
          [20, true, 21],
          [40, true, 41],
        ],
      )
      await r.report(8, 'critical')
      await r.report(8, 'high')
      await r.report(8, 'high')
      assert.deepEqual(
        r.alerts.filter((a) => a.userKey === 'id:8').map((a) => [a.level, a.rise]),
        [
          [20, 25],
          [40, 45],
        ],
      )
    } finally {
      await r.close()
    }
  })

  it('alerts for 3 users at once are not mixed up', async () => {
    const r = await rig()
    try {
      // In parallel: alice is brute-forced over HTTP, ids 8 and 9 report app-level attacks.
      const alice = (async () => {
        for (let i = 0; i < 10; i++) await r.sendLogin('alice', WRONG, '203.0.113.7')
      })()
      const eight = (async () => {
        await r.sendReport(8, 'high')
        await r.sendReport(8, 'low')
      })()
      const nine = (async () => {
        await r.sendReport(9, 'high')
        await r.sendReport(9, 'medium')
      })()
      await Promise.all([alice, eight, nine])
      await r.scored(14)
      assert.equal(r.alerts.length, 3)
      const byUser = new Map(r.alerts.map((a) => [a.userKey, a]))
      const a = byUser.get('login:alice')
      assert.deepEqual(a?.identity, { login: 'alice' })
      assert.equal(a?.ip, '203.0.113.0/24')
      assert.equal(a?.rise, 24)
      assert.deepEqual(
        a?.detections.map((d) => d.detection),
        [...Array(5).fill('wrong_password'), 'failure_burst', 'brute_force'],
      )
      // wrong_password entries carry no evidence (memory budget); every other one names the IP.
      assert.ok(a?.detections.every((d) => d.detection === 'wrong_password' || d.evidence?.ip === '203.0.113.0/24'))
      assert.ok(a?.detections.some((d) => d.evidence?.ip === '203.0.113.0/24'))
      const b = byUser.get('id:8')
      assert.deepEqual(b?.identity, { id: 8 })
      assert.equal(b?.rise, 12)
      assert.deepEqual(
        b?.detections.map((d) => d.detection),
        ['attack_high', 'attack_low'],
      )
      const c = byUser.get('id:9')
      assert.deepEqual(c?.identity, { id: 9 })
      assert.equal(c?.rise, 15)
      assert.deepEqual(
        c?.detections.map((d) => d.detection),
        ['attack_high', 'attack_medium'],
      )
    } finally {
      await r.close()
    }
  })
})
