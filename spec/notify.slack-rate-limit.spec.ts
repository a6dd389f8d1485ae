/**
 * Slack's rate limit during an alert storm, against a local server that limits
 * like a Slack incoming webhook (a few messages a second, then 429 with
 * `Retry-After` until the second is over). A `Retry-After` pauses the whole Slack
 * channel: its queued alerts are not sent into the limit (where each would burn
 * its retries and be dropped), they keep their order, and the other channels
 * (here the webhook) carry on. The pause is bounded however far `Retry-After`
 * points, and close() counts what a pause still held back.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, it } from 'node:test'
import { createDiagnostics } from '../lib/diagnostics.js'
import type { RiskAlert } from '../lib/index.js'
import { nodeFetch } from '../lib/notify/http.js'
import { DeliveryQueue, MAX_CHANNEL_PAUSE_MS } from '../lib/notify/queue.js'
import { slackChannel } from '../lib/notify/slack.js'
import { webhookChannel } from '../lib/notify/webhook.js'
import { MemoryLogger, variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  type ReceivedRequest,
  SlackReceiver,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

/** An alert about user `user`, straight to the queue (no engine). */
const stormAlert = (id: string, user: string): RiskAlert => ({
  type: 'user.risk.increased',
  id,
  at: new Date().toISOString(),
  userKey: `id:${user}`,
  identity: { id: user },
  level: 10,
  escalation: false,
  rise: 20,
  windowMs: 86_400_000,
  score: 20,
  detections: [],
})

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const WEBHOOK_SECRET = 'slack-rate-limit-spec-webhook-secret-0123'

/**
 * Limits like Slack: at most `perWindow` messages per one-second window (a window starts
 * at the first message after the previous one ended); past that, 429 `rate_limited` with
 * `Retry-After` until the window ends.
 */
class RateLimitedSlack extends SlackReceiver {
  readonly #perWindow: number
  #windowStart = 0
  #accepted = 0

  constructor(perWindow: number) {
    super()
    this.#perWindow = perWindow
  }

  protected override handler() {
    return (req: IncomingMessage, res: ServerResponse): void => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const now = Date.now()
        if (now - this.#windowStart >= 1000) {
          this.#windowStart = now
          this.#accepted = 0
        }
        const seconds = Math.ceil((this.#windowStart + 1000 - now) / 1000)
        // The answer for this request (the script is otherwise unused).
        this.script(
          this.#accepted++ < this.#perWindow
            ? 200
            : { status: 429, headers: { 'retry-after': String(seconds) }, body: 'rate_limited' },
        )
        this.answer(this.record(req, Buffer.concat(chunks).toString('utf8')), res)
      })
    }
  }
}

const userOf = (r: ReceivedRequest): string => /`(id:[^`]+)`/.exec(r.body)?.[1] ?? '?'
const limited = (r: ReceivedRequest): boolean => typeof r.answer === 'object' && r.answer.status === 429

describe('Slack rate limit (429 + Retry-After) during an alert storm', () => {
  it('pauses the whole Slack channel: every alert delivered, in order, none sent into the limit twice; the webhook carries on', async () => {
    const slack = await new RateLimitedSlack(4).start()
    const webhook = await WebhookReceiver.start(WEBHOOK_SECRET)
    const raised: string[] = []
    // Two retries: without the pause, alerts queued behind the first 429 are sent into the
    // limit at once, then retried in step, and the last ones run out of tries.
    const h = alertApp(variant, {
      slack: slack.url,
      webhook: { url: webhook.url, secret: WEBHOOK_SECRET },
      delivery: { retries: 2, baseDelay: 10, maxDelay: 50, closeTimeout: 10_000 },
      onAlert: (alert: RiskAlert) => void raised.push(alert.userKey),
    })
    try {
      for (let i = 0; i < 16; i++) await attack(h.app, `u-storm-${i}`)
      await waitUntil(() => raised.length === 16, 'sixteen alerts raised')
      await waitUntil(
        () => {
          const { counters } = h.sqreen.stats()
          return (counters['deliveries.slack'] ?? 0) + (counters['deliveries_failed.slack'] ?? 0) === 16
        },
        'every Slack delivery to end',
        10_000,
      )
      await h.sqreen.close()
      const { counters } = h.sqreen.stats()
      const shown = slack.requests.map((r) => `${userOf(r)}:${limited(r) ? 429 : 200}`).join(' ')
      assert.equal(counters['deliveries_failed.slack'], undefined, `Slack alerts were dropped: ${shown}`)
      assert.equal(counters['deliveries.slack'], 16)

      // Paused, not hammered: an alert meets the limit at most once (it was already on its way).
      const refusals = new Map<string, number>()
      for (const r of slack.requests.filter(limited)) refusals.set(userOf(r), (refusals.get(userOf(r)) ?? 0) + 1)
      assert.ok(refusals.size > 0, 'the storm did hit the limit')
      for (const [user, n] of refusals) assert.equal(n, 1, `${user} was sent into the limit ${n} times: ${shown}`)
      // Nothing sent while paused: past the first 429, only requests already on their way arrive in that second.
      const first429 = slack.requests.find(limited) as ReceivedRequest
      const during = slack.requests.filter((r) => r.at > first429.at + 100 && r.at < first429.at + 950)
      assert.deepEqual(
        during.map(userOf),
        [],
        `sent while Slack said to wait (429 at +${first429.at - (slack.requests[0]?.at ?? 0)} ms): ${shown}`,
      )
      // In order: Slack took them in the order they were raised (give or take the 4 running at once).
      const accepted = slack.requests.filter((r) => !limited(r)).map(userOf)
      accepted.forEach((user, i) => {
        const raisedAt = raised.indexOf(user)
        assert.ok(
          Math.abs(raisedAt - i) < 4,
          `${user}, raised #${raisedAt}, reached Slack #${i}: ${accepted.join(' ')}`,
        )
      })
      assert.equal(counters['deliveries_paused.slack'] !== undefined, true)
      const warning = h.logger.lines.filter((l) => l.includes('channel_paused.slack'))
      assert.equal(warning.length, 1, `logged once: ${h.logger.lines.join('\n')}`)
      assert.match(warning[0] ?? '', /slack deliveries are paused for 1 s .*the other channels carry on/)

      // The other channels are not held back: the webhook had all 16 before Slack's first pause ended.
      assert.equal(counters['deliveries.webhook'], 16)
      const lastWebhook = Math.max(...webhook.requests.map((r) => r.at))
      assert.ok(
        lastWebhook < first429.at + 950,
        `the webhook finished ${lastWebhook - first429.at} ms after Slack's first 429`,
      )
    } finally {
      await h.sqreen.close()
      await slack.close()
      await webhook.close()
    }
  })

  it("a channel paused for minutes holds at most its share of the queue: the other channels' alerts are not dropped", async () => {
    // Rate limited for two minutes: every request answered 429.
    const limited = { status: 429, headers: { 'retry-after': '120' }, body: 'rate_limited' }
    const slack = (await SlackReceiver.start()).script(...Array.from({ length: 50 }, () => limited))
    const webhook = await WebhookReceiver.start(WEBHOOK_SECRET)
    const diag = createDiagnostics(new MemoryLogger())
    const queue = new DeliveryQueue(
      { maxQueued: 20, retries: 2, baseDelayMs: 10, maxDelayMs: 50, concurrency: 4 },
      diag,
    )
    const slackOut = slackChannel(slack.url, nodeFetch, 2000)
    const hook = webhookChannel(webhook.url, WEBHOOK_SECRET, nodeFetch, 2000, Date.now)
    const alert = (i: number): RiskAlert => stormAlert(`storm-${i}`, `u-${i}`)
    try {
      // An alert storm spread over time: each alert goes to both channels.
      for (let i = 0; i < 40; i++) {
        queue.enqueue(slackOut, alert(i))
        queue.enqueue(hook, alert(i))
        await waitUntil(() => webhook.verified.length === i + 1, `webhook alert ${i} to arrive`, 2000)
      }
      assert.ok(queue.isPaused('slack'))
      assert.equal(webhook.verified.length, 40, 'every webhook alert was delivered')
      // The receiver has the last one before the queue has read its answer: wait for that,
      // so what the queue still holds is Slack's alone.
      await waitUntil(() => diag.snapshot().counters['deliveries.webhook'] === 40, 'the webhook answers read', 2000)
      // Slack's alerts beyond its share (half of 20) were dropped and counted.
      assert.equal(queue.size, 10, `slack holds ${queue.size}`)
      assert.equal(diag.snapshot().counters.deliveries_dropped, 30, JSON.stringify(diag.snapshot()))
      assert.equal(diag.snapshot().counters['deliveries.slack'], undefined)
    } finally {
      await queue.close(10)
      await slack.close()
      await webhook.close()
    }
  })

  it('bounded: a Retry-After of a day pauses the channel for at most maxPauseMs (10 min by default), then it resumes', async () => {
    assert.equal(MAX_CHANNEL_PAUSE_MS, 10 * 60_000)
    const slack = (await SlackReceiver.start()).script({
      status: 429,
      headers: { 'retry-after': '86400' },
      body: 'rate_limited',
    })
    const logger = new MemoryLogger()
    const diag = createDiagnostics(logger)
    const queue = new DeliveryQueue(
      { maxQueued: 10, retries: 2, baseDelayMs: 10, maxDelayMs: 50, concurrency: 4, maxPauseMs: 300 },
      diag,
    )
    const channel = slackChannel(slack.url, nodeFetch, 2000)
    const alert = stormAlert('a-1', 'u-cap')
    try {
      queue.enqueue(channel, alert)
      await waitUntil(() => queue.isPaused('slack'), 'Slack to be paused')
      await slack.waitFor(2, 3000)
      await queue.drain()
      const [first, second] = slack.requests
      const waited = (second?.at ?? 0) - (first?.at ?? 0)
      assert.ok(waited >= 290 && waited < 1500, `resumed after ${waited} ms; the cap is 300 ms`)
      assert.equal(queue.isPaused('slack'), false)
      assert.equal(diag.snapshot().counters['deliveries.slack'], 1)
      assert.ok(
        logger.lines.some((l) => l.includes('paused for 0.3 s (Retry-After is capped at 0.3 s)')),
        logger.lines.join('\n'),
      )
    } finally {
      await queue.close(100)
      await slack.close()
    }
  })

  it('the default cap is 10 minutes, and close() counts the alerts a pause still holds back', async () => {
    const slack = (await SlackReceiver.start()).script({
      status: 429,
      headers: { 'retry-after': '86400' },
      body: 'rate_limited',
    })
    const h = alertApp(variant, { slack: slack.url, delivery: { baseDelay: 10, maxDelay: 50, closeTimeout: 200 } })
    try {
      await attack(h.app, 'u-paused-0')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_paused.slack'] === 1, 'Slack to be paused')
      await attack(h.app, 'u-paused-1')
      await attack(h.app, 'u-paused-2')
      await waitUntil(() => h.sqreen.stats().counters.alerts === 3, 'three alerts raised')
      const started = Date.now()
      await h.sqreen.close()
      const took = Date.now() - started
      assert.ok(took < 1000, `close() took ${took} ms (closeTimeout 200)`)
      assert.equal(slack.requests.length, 1, 'nothing sent while paused')
      const { counters } = h.sqreen.stats()
      assert.equal(counters.deliveries_abandoned, 3, 'the refused alert and the two queued behind it')
      assert.ok(
        h.logger.lines.some((l) =>
          /slack deliveries are paused for 10 min \(Retry-After is capped at 10 min\)/.test(l),
        ),
      )
      assert.ok(
        h.logger.lines.some((l) => /delivery_abandoned.*\(slack: 3\)/.test(l)),
        h.logger.lines.join('\n'),
      )
    } finally {
      await h.sqreen.close()
      await slack.close()
    }
  })
})
