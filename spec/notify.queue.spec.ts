/**
 * The alert delivery queue (lib/notify/queue.ts, through the dispatcher) against a
 * real webhook receiver on 127.0.0.1: the `delivery.maxQueued` bound (the excess is
 * dropped and counted as `deliveries_dropped`, what was queued is still delivered,
 * logins and reports are not slowed), exponential backoff with equal jitter from
 * `baseDelay` capped at `maxDelay` (read from the receiver's own clock), and
 * `Retry-After` (seconds or an HTTP date) winning over the backoff, and `close()`
 * bounded by `closeTimeout`, counting every delivery it drops.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { Options } from '../lib/index.js'
import type { SendResult } from '../lib/notify/http.js'
import { retryAfterMs } from '../lib/notify/http.js'
import { type Channel, DeliveryQueue } from '../lib/notify/queue.js'
import type { RiskAlert } from '../lib/risk/alert.js'
import { MemoryLogger, variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  failLogins,
  login,
  type ReceivedRequest,
  serve,
  USERS,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const SECRET = 'queue-spec-webhook-secret-0123456789'

const webhookApp = (receiver: WebhookReceiver, delivery: NonNullable<Options['delivery']>) =>
  alertApp(variant, { webhook: { url: receiver.url, secret: SECRET }, delivery })

/** Gaps (ms) between consecutive requests, as the receiver saw them. */
const gapsOf = (requests: readonly ReceivedRequest[]): number[] =>
  requests.slice(1).map((r, i) => r.at - (requests[i] as ReceivedRequest).at)

/** The requests of one alert (one webhook-id), in arrival order. */
const byAlert = (requests: readonly ReceivedRequest[]): ReceivedRequest[][] => {
  const groups = new Map<string, ReceivedRequest[]>()
  for (const r of requests) {
    const id = String(r.headers['webhook-id'])
    groups.set(id, [...(groups.get(id) ?? []), r])
  }
  return [...groups.values()]
}

describe('alert delivery queue', () => {
  it('maxQueued bounds the deliveries waiting: the excess is dropped and counted, the rest delivered, logins unaffected', async () => {
    // The queue runs 4 deliveries at once: 4 hang (until the 300 ms timeout), 2 wait behind them.
    const receiver = (await WebhookReceiver.start(SECRET)).script('hang', 'hang', 'hang', 'hang')
    const h = webhookApp(receiver, { timeout: 300, retries: 0, baseDelay: 10, maxDelay: 50, maxQueued: 6 })
    const app = await serve(h.app)
    const jane = USERS[0]!
    try {
      const baseline = []
      for (let i = 0; i < 3; i++) baseline.push(await login(app.url, jane.username, jane.password))
      // Nine alerts (one per user, +20 each) while the first four deliveries hang.
      const reports = []
      for (let i = 0; i < 9; i++) {
        const started = performance.now()
        await attack(app.url, `u-flood-${i}`)
        reports.push(performance.now() - started)
      }
      await waitUntil(() => h.sqreen.stats().counters.alerts === 9, 'nine alerts raised')
      await receiver.waitFor(4)
      // Logins while the queue is full and its workers are stuck on a dead receiver.
      const during = []
      for (let i = 0; i < 5; i++) during.push(await login(app.url, jane.username, jane.password))

      await waitUntil(
        () => {
          const { counters } = h.sqreen.stats()
          return (counters['deliveries_failed.webhook'] ?? 0) + (counters['deliveries.webhook'] ?? 0) === 6
        },
        'the six queued deliveries to finish',
        5000,
      )
      await h.sqreen.close()

      const { counters } = h.sqreen.stats()
      assert.equal(counters.deliveries_dropped, 3, 'nine alerts, room for six')
      assert.equal(counters['deliveries_failed.webhook'], 4, 'the four that hung timed out')
      assert.equal(counters['deliveries.webhook'], 2, 'the two that waited were delivered once a worker was free')
      assert.equal(receiver.requests.length, 6, 'dropped deliveries never reach the receiver')
      // The first six alerts were kept (a full queue refuses new work), the last three dropped.
      const delivered = receiver.requests.map((r) => JSON.parse(r.body).userKey as string).sort()
      assert.deepEqual(
        delivered,
        Array.from({ length: 6 }, (_, i) => `id:u-flood-${i}`),
      )
      const warning = h.logger.lines.filter((l) => l.includes('delivery_queue_full'))
      assert.equal(warning.length, 1, `logged once: ${h.logger.lines.join('\n')}`)
      assert.match(warning[0] ?? '', /more than 6 alert deliveries are waiting/)

      const slowest = Math.max(...baseline.map((b) => b.ms))
      for (const l of during) {
        assert.equal(l.status, 200)
        assert.ok(
          l.ms < Math.max(250, slowest * 3),
          `a login took ${l.ms.toFixed(0)} ms with the queue full (baseline ${slowest.toFixed(0)})`,
        )
      }
      for (const ms of reports) assert.ok(ms < 250, `a trackEvent report took ${ms.toFixed(0)} ms`)
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })

  it('an alert flood on made-up logins neither drops nor delays the alert about an account', async () => {
    // 4 deliveries hang (the queue's 4 workers) while 12 brute forces on logins no account
    // has raise 12 alerts: room for 6. Then an account is attacked.
    const receiver = (await WebhookReceiver.start(SECRET)).script('hang', 'hang', 'hang', 'hang')
    const h = webhookApp(receiver, { timeout: 300, retries: 0, baseDelay: 10, maxDelay: 50, maxQueued: 6 })
    const app = await serve(h.app)
    try {
      for (let i = 0; i < 12; i++) await failLogins(app.url, `ghost-${i}`, 10, { ip: `203.0.113.${i + 1}` })
      await waitUntil(() => h.sqreen.stats().counters.alerts === 12, 'twelve alerts raised')
      await receiver.waitFor(4)
      await attack(app.url, 'u-account')
      await waitUntil(
        () => receiver.requests.some((r) => JSON.parse(r.body).userKey === 'id:u-account'),
        "the account's alert to be delivered",
        5000,
      )
      await h.sqreen.close()
      const keys = receiver.requests.map((r) => JSON.parse(r.body).userKey as string)
      // The first after the four that hung: the account's, ahead of the logins' queued before it.
      assert.equal(keys[4], 'id:u-account', keys.join(', '))
      const { counters } = h.sqreen.stats()
      // 13 alerts, room for 6 at a time: 6 login alerts dropped when they came, then the
      // newest queued login alert dropped for the account's.
      assert.equal(counters.deliveries_dropped, 7)
      assert.ok(
        h.logger.lines.some((l) => l.includes('delivery_login_alert_dropped')),
        h.logger.lines.join('\n'),
      )
    } finally {
      await h.sqreen.close()
      await app.close()
      await receiver.close()
    }
  })

  it('backoff: retries after 503 wait base * 2^n with equal jitter (half to all of it), capped at maxDelay', async () => {
    // baseDelay 50, maxDelay 200: the waits are in [25, 50], [50, 100], [100, 200], then [100, 200] (capped).
    const receiver = (await WebhookReceiver.start(SECRET)).script(503, 503, 503, 503, 503, 200)
    const h = webhookApp(receiver, { retries: 5, baseDelay: 50, maxDelay: 200 })
    try {
      await attack(h.app, 'u-backoff')
      await receiver.waitFor(6, 5000)
      await h.sqreen.close()
      const gaps = gapsOf(receiver.requests)
      const shown = gaps.join(', ')
      assert.equal(receiver.requests.length, 6, 'five 503s, then delivered')
      assert.equal(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size, 1, 'one alert')
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries_retried.webhook'], 5)
      assert.equal(counters['deliveries.webhook'], 1)

      // Each wait is at least half of its ceiling (the fixed half of equal jitter; timers never fire early).
      const ceilings = [50, 100, 200, 200, 200]
      // A request's own round trip and a busy 2-core machine add to a wait, never take from it.
      const SLACK = 120
      ceilings.forEach((ceiling, i) => {
        const gap = gaps[i] ?? 0
        assert.ok(gap >= ceiling / 2 - 2, `retry ${i + 1} waited ${gap} ms, under half of ${ceiling} (gaps: ${shown})`)
        assert.ok(gap <= ceiling + SLACK, `retry ${i + 1} waited ${gap} ms, over ${ceiling} ms (gaps: ${shown})`)
      })
      // It grows: the third wait (at least 100 ms) cannot come from a constant 25-50 ms backoff.
      assert.ok((gaps[2] ?? 0) > (gaps[0] ?? 0), `no growth: ${shown}`)
      // And it stops growing: uncapped, the fifth wait would be 400-800 ms.
      assert.ok((gaps[4] ?? 0) < 400, `the fifth wait is not capped at maxDelay: ${shown}`)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('jitter: the first retries of simultaneous alerts do not all wait the full baseDelay', async () => {
    // Eight alerts refused once each: without jitter every first retry waits 200 ms;
    // with equal jitter each waits 100-200 ms, so all eight >= 180 ms has odds of 0.2^8.
    const receiver = (await WebhookReceiver.start(SECRET)).script(...Array.from({ length: 8 }, () => 503))
    const h = webhookApp(receiver, { retries: 1, baseDelay: 200, maxDelay: 200 })
    try {
      for (let i = 0; i < 8; i++) await attack(h.app, `u-jitter-${i}`)
      await receiver.waitFor(16, 5000)
      await h.sqreen.close()
      const groups = byAlert(receiver.requests)
      assert.equal(groups.length, 8)
      const waits = groups.map((g) => {
        assert.equal(g.length, 2, 'one 503, one retry')
        return (g[1] as ReceivedRequest).at - (g[0] as ReceivedRequest).at
      })
      for (const w of waits) assert.ok(w >= 98 && w <= 200 + 150, `a first retry waited ${w} ms (${waits.join(', ')})`)
      assert.ok(Math.min(...waits) < 180, `every first retry waited the full delay: ${waits.join(', ')}`)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('Retry-After in seconds wins over the (much shorter) backoff', async () => {
    const receiver = (await WebhookReceiver.start(SECRET)).script({ status: 503, headers: { 'retry-after': '1' } })
    const h = webhookApp(receiver, { retries: 2, baseDelay: 10, maxDelay: 20 })
    try {
      await attack(h.app, 'u-retry-after')
      await receiver.waitFor(2, 4000)
      await h.sqreen.close()
      const [waited] = gapsOf(receiver.requests)
      // Our backoff would be 5-10 ms here: a wait near a second can only come from Retry-After.
      assert.ok((waited ?? 0) >= 990, `retried after ${waited} ms; Retry-After said 1 s`)
      assert.ok((waited ?? 0) < 2500, `retried after ${waited} ms`)
      assert.equal(receiver.requests.length, 2)
      assert.equal(h.sqreen.stats().counters['deliveries.webhook'], 1)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('Retry-After as an HTTP date is honoured; one that cannot be read falls back to the backoff', async () => {
    // Whole seconds: a date 2.5 s ahead is 1.5 to 2.5 s away once written out (less the set-up below).
    const date = new Date(Date.now() + 2500).toUTCString()
    const receiver = (await WebhookReceiver.start(SECRET)).script(
      { status: 503, headers: { 'retry-after': date } },
      { status: 503, headers: { 'retry-after': 'soon' } },
    )
    const h = webhookApp(receiver, { retries: 3, baseDelay: 20, maxDelay: 40 })
    try {
      await attack(h.app, 'u-retry-date')
      await receiver.waitFor(3, 5000)
      await h.sqreen.close()
      const [first, second] = gapsOf(receiver.requests)
      assert.ok((first ?? 0) >= 1000, `retried after ${first} ms; Retry-After said ${date}`)
      assert.ok((first ?? 0) < 3500, `retried after ${first} ms; Retry-After said ${date}`)
      assert.ok((second ?? 0) >= 10 && (second ?? 0) < 400, `"soon" is no date: backoff expected, waited ${second} ms`)
      assert.equal(h.sqreen.stats().counters['deliveries.webhook'], 1)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('close() drops nothing silently: deliveries still queued are counted as abandoned and logged once', async () => {
    // The queue runs 4 deliveries at once: 4 hang (until their 1 s timeout), 3 wait behind them.
    const receiver = (await WebhookReceiver.start(SECRET)).script('hang', 'hang', 'hang', 'hang')
    const h = webhookApp(receiver, { timeout: 1000, retries: 0, closeTimeout: 200 })
    try {
      for (let i = 0; i < 7; i++) await attack(h.app, `u-close-${i}`)
      await waitUntil(() => h.sqreen.stats().counters.alerts === 7, 'seven alerts raised')
      await receiver.waitFor(4)
      const started = Date.now()
      await h.sqreen.close()
      const took = Date.now() - started
      // Still bounded: close() waits closeTimeout, not for the hung deliveries' own timeout.
      assert.ok(took >= 150 && took < 800, `close() took ${took} ms (closeTimeout 200, delivery timeout 1000)`)
      assert.equal(h.sqreen.stats().counters.deliveries_abandoned, 3, 'the three that never started')
      const lines = h.logger.lines.filter((l) => l.includes('delivery_abandoned'))
      assert.equal(lines.length, 1, `logged once: ${h.logger.lines.join('\n')}`)
      assert.match(lines[0] ?? '', /^error .*3 alert deliveries were still queued .*after 200 ms \(webhook: 3\)/)

      // The four running were not cut short: they end on their own timeout, counted as failed, not retried.
      await waitUntil(
        () => h.sqreen.stats().counters['deliveries_failed.webhook'] === 4,
        'the hung deliveries to time out',
      )
      assert.equal(receiver.requests.length, 4, 'nothing sent after close()')
      const { counters } = h.sqreen.stats()
      const accounted =
        (counters['deliveries.webhook'] ?? 0) +
        (counters['deliveries_failed.webhook'] ?? 0) +
        (counters.deliveries_abandoned ?? 0) +
        (counters.deliveries_dropped ?? 0)
      assert.equal(accounted, 7, `every alert accounted for: ${JSON.stringify(counters)}`)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })

  it('a Retry-After far away parks the retry (close() abandons it) and is capped at 10 minutes', async () => {
    const receiver = (await WebhookReceiver.start(SECRET)).script({ status: 503, headers: { 'retry-after': '86400' } })
    const h = webhookApp(receiver, { retries: 3, baseDelay: 10, maxDelay: 20, closeTimeout: 100 })
    try {
      await attack(h.app, 'u-retry-far')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_retried.webhook'] === 1, 'the retry to be scheduled')
      const started = Date.now()
      await h.sqreen.close()
      assert.ok(Date.now() - started < 1000, 'close() does not wait for a parked retry')
      assert.equal(receiver.requests.length, 1, 'not retried on the 10-20 ms backoff')
      assert.equal(h.sqreen.stats().counters.deliveries_abandoned, 1)
      // The cap itself (a day asked, ten minutes granted), read the way the channels read the header.
      assert.equal(retryAfterMs('86400'), 10 * 60_000)
      assert.equal(retryAfterMs('2'), 2000)
    } finally {
      await h.sqreen.close()
      await receiver.close()
    }
  })
})

describe('alert delivery queue: room for accounts, kept exactly', () => {
  /** A channel whose deliveries wait until the test lets them go (a receiver that hangs). */
  const stuck = (name: string) => {
    const waiting: (() => void)[] = []
    const channel: Channel = {
      name,
      send: () => new Promise<SendResult>((resolve) => waiting.push(() => resolve({ ok: true }))),
    }
    return {
      channel,
      release: () => {
        for (const go of waiting.splice(0)) go()
      },
    }
  }
  const alertFor = (userKey: string): RiskAlert => ({ userKey }) as unknown as RiskAlert

  it("an account's alert at its channel's share drops that channel's login alert, never another channel's for nothing", async () => {
    const diag = createDiagnostics(new MemoryLogger())
    const queue = new DeliveryQueue({ maxQueued: 4, retries: 0, baseDelayMs: 10, maxDelayMs: 10, concurrency: 1 }, diag)
    const a = stuck('a')
    const b = stuck('b')
    // One running (a), then a holds 2 account alerts (its share), b holds 2 login alerts.
    queue.enqueue(a.channel, alertFor('id:0'))
    queue.enqueue(b.channel, alertFor('login:x'))
    queue.enqueue(a.channel, alertFor('id:1'))
    queue.enqueue(b.channel, alertFor('login:y'))
    assert.equal(queue.size, 4)
    // a is at its share and holds no login alert: the new account alert is dropped, and
    // b's login alerts stay (dropping one would free nothing a can use).
    queue.enqueue(a.channel, alertFor('id:2'))
    assert.equal(diag.snapshot().counters.deliveries_dropped, 1)
    assert.equal(queue.size, 4)
    // b is at its share too: an account alert for b takes the place of b's newest login alert.
    queue.enqueue(b.channel, alertFor('id:3'))
    assert.equal(diag.snapshot().counters.deliveries_dropped, 2)
    assert.equal(queue.size, 4)
    a.release()
    b.release()
    await waitUntil(() => {
      a.release()
      b.release()
      return queue.size === 0
    }, 'the queue to drain')
  })
})
