/**
 * Slack alerts against a local server that answers like a Slack incoming
 * webhook: the payload (text fallback + Block Kit, nothing linking out), and the
 * documented answers: 429 + Retry-After is honoured, 400 is dropped, 403/404/410
 * disable the channel loudly (the other channels carry on), 5xx is retried, and
 * user-controlled text cannot inject mrkdwn controls.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import request from 'supertest'
import type { Options } from '../lib/index.js'
import { variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  failLogins,
  type SlackPayload,
  SlackReceiver,
  SmtpReceiver,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const FAST = { baseDelay: 10, maxDelay: 50 } as const
const WEBHOOK_SECRET = 'slack-spec-webhook-secret-0123456789'

/** Every piece of text Slack would render as mrkdwn. */
const mrkdwnTexts = (payload: SlackPayload): string[] => [
  payload.text,
  ...payload.blocks.flatMap((b) => [
    ...(b.text?.type === 'mrkdwn' ? [b.text.text] : []),
    ...(b.fields ?? []).map((f) => f.text),
    ...(b.elements ?? []).map((e) => e.text),
  ]),
]

describe('Slack alerts', () => {
  let slack: SlackReceiver
  before(async () => {
    slack = await SlackReceiver.start()
  })
  after(() => slack.close())

  const slackApp = (extra: Partial<Options> = {}) => alertApp(variant, { slack: slack.url, delivery: FAST, ...extra })

  it('posts a text fallback and Block Kit blocks (user, rise, score, IP, detections) with no links', async () => {
    const seen = slack.requests.length
    const h = slackApp()
    // A brute force: five wrong passwords, a burst and the brute force itself.
    await failLogins(h.app, 'jdoe-private', 10, { ip: '203.0.113.77' })
    await slack.waitFor(seen + 1)
    await h.sqreen.close()
    assert.equal(slack.requests.length, seen + 1, 'one message per alert')
    const request = slack.requests[seen]!
    assert.equal(request.method, 'POST')
    assert.match(String(request.headers['content-type']), /^application\/json/)
    const payload = JSON.parse(request.body) as SlackPayload

    assert.equal(payload.text, 'User risk rose by 24 points in 24h: `login:jdoe-private`')
    const [header, facts, detections] = payload.blocks
    assert.equal(header?.type, 'header')
    assert.deepEqual(header?.text, { type: 'plain_text', text: 'User risk rose by 24 points in 24h', emoji: false })
    assert.equal(facts?.type, 'section')
    const fields = (facts?.fields ?? []).map((f) => f.text)
    assert.deepEqual(fields, [
      '*User*\n`login:jdoe-private`',
      '*Rise*\n+24 (threshold &gt; 10)',
      '*Standing score*\n24',
      '*Last IP*\n203.0.113.0/24',
    ])
    assert.equal(detections?.text?.type, 'mrkdwn')
    const lines = (detections?.text?.text ?? '').split('\n')
    assert.equal(lines[0], '*Detections*')
    assert.match(lines[1] ?? '', /^• Wrong password ×5 \(\+5\)/)
    assert.match(lines[2] ?? '', /^• Burst of failed logins \(\+4\)/)
    assert.match(lines[3] ?? '', /^• Brute force \(\+15\) — consecutive 10, ip 203\.0\.113\.0\/24$/)
    // Nothing to click through to, and the full client IP is never shown.
    assert.doesNotMatch(request.body, /https?:\/\//i)
    assert.doesNotMatch(request.body, /203\.0\.113\.77/)
  })

  it('429 with Retry-After: waits that long, then delivers exactly once', async () => {
    const seen = slack.requests.length
    slack.script({ status: 429, headers: { 'retry-after': '1' }, body: 'rate_limited' }, 200)
    const h = slackApp()
    await attack(h.app, 'u-429')
    await slack.waitFor(seen + 2)
    await h.sqreen.close()
    const [limited, delivered] = slack.requests.slice(seen)
    assert.equal(slack.requests.length, seen + 2)
    const waited = delivered!.at - limited!.at
    // Our backoff here would be 5-10 ms: a wait near a second can only come from Retry-After.
    assert.ok(waited >= 900, `retried after ${waited} ms, before Retry-After: 1`)
    assert.ok(waited < 3000, `retried after ${waited} ms`)
    assert.equal(delivered!.body, limited!.body, 'the same message is retried')
    const { counters } = h.sqreen.stats()
    assert.equal(counters['deliveries.slack'], 1)
    assert.equal(counters['deliveries_retried.slack'], 1)
  })

  it('400 (a payload Slack refuses) is dropped without a retry and counted', async () => {
    const seen = slack.requests.length
    slack.script({ status: 400, body: 'invalid_blocks' })
    const h = slackApp()
    await attack(h.app, 'u-400')
    await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.slack'] === 1, 'the message to be dropped')
    // close() drains the queue: a retry, had one been scheduled, would have been sent by now.
    await h.sqreen.close()
    assert.equal(slack.requests.length, seen + 1)
    const { counters } = h.sqreen.stats()
    assert.equal(counters['deliveries_retried.slack'], undefined)
    assert.equal(counters['deliveries.slack'], undefined)
    assert.ok(h.logger.lines.some((l) => l.startsWith('error ') && l.includes('delivery_failed.slack')))
  })

  it('500 is retried until Slack accepts', async () => {
    const seen = slack.requests.length
    slack.script(500, 503, 200)
    const h = slackApp()
    await attack(h.app, 'u-500')
    await slack.waitFor(seen + 3)
    await h.sqreen.close()
    assert.equal(slack.requests.length, seen + 3)
    const { counters } = h.sqreen.stats()
    assert.equal(counters['deliveries.slack'], 1)
    assert.equal(counters['deliveries_retried.slack'], 2)
  })

  for (const status of [403, 404, 410]) {
    it(`${status} disables Slack loudly; e-mail and webhook keep delivering`, async () => {
      const seen = slack.requests.length
      slack.script({ status, body: status === 404 ? 'no_service' : 'invalid_token' })
      const smtp = await SmtpReceiver.start()
      const webhook = await WebhookReceiver.start(WEBHOOK_SECRET)
      const h = slackApp({
        email: { transport: smtp.transport, from: 'alerts@example.com', to: 'soc@example.com' },
        webhook: { url: webhook.url, secret: WEBHOOK_SECRET },
      })
      try {
        await attack(h.app, 'u-first')
        await waitUntil(() => h.logger.lines.some((l) => /disabled/i.test(l)), 'Slack to be disabled')
        const line = h.logger.lines.find((l) => /disabled/i.test(l)) ?? ''
        assert.ok(line.startsWith('error '), `logged with logger.error: ${line}`)
        assert.match(line, /slack/i)
        assert.match(line, new RegExp(`HTTP ${status}`))

        await attack(h.app, 'u-second')
        await smtp.waitFor(2)
        await webhook.waitFor(2)
        await h.sqreen.close()
        assert.equal(slack.requests.length, seen + 1, 'nothing is sent to a disabled Slack webhook')
        // Each alert Slack misses is counted, not dropped silently.
        assert.equal(h.sqreen.stats().counters['deliveries_disabled.slack'], 1)
        assert.deepEqual(
          webhook.verified.map((a) => a.userKey),
          ['id:u-first', 'id:u-second'],
        )
        assert.deepEqual(
          smtp.mails.map((m) => m.subject.split(': ')[1]),
          ['id:u-first', 'id:u-second'],
        )
        const { counters } = h.sqreen.stats()
        assert.equal(counters['deliveries_failed.slack'], 1)
        assert.equal(counters['deliveries.slack'], undefined)
      } finally {
        await h.sqreen.close()
        await smtp.close()
        await webhook.close()
      }
    })
  }

  it('escapes mrkdwn control characters coming from user data', async () => {
    const seen = slack.requests.length
    const h = slackApp()
    // An id an attacker might pick: a channel-wide ping, a fake link, an entity.
    await attack(h.app, '<!channel> <evil.example|click> &amp;')
    await slack.waitFor(seen + 1)
    await h.sqreen.close()
    const payload = JSON.parse(slack.requests[seen]!.body) as SlackPayload
    const escaped = 'id:&lt;!channel&gt; &lt;evil.example|click&gt; &amp;amp;'
    assert.ok(payload.text.endsWith(`: \`${escaped}\``), payload.text)
    assert.ok(
      payload.blocks.some((b) => b.fields?.some((f) => f.text === `*User*\n\`${escaped}\``)),
      JSON.stringify(payload.blocks),
    )
    for (const text of mrkdwnTexts(payload)) {
      // `<` opens links and mentions (<!channel>, <url|text>); Slack asks for &, < and > escaped.
      assert.doesNotMatch(text, /[<>]/, `unescaped < or > in ${JSON.stringify(text)}`)
      assert.doesNotMatch(text, /&(?!amp;|lt;|gt;)/, `unescaped & in ${JSON.stringify(text)}`)
    }
  })

  it('a login cannot format the message, add lines, make links or push a field past Slack limits', async () => {
    const seen = slack.requests.length
    const h = slackApp()
    // Closes the code span and writes its own bold line with a link; newlines add fake lines.
    const login = 'x` *URGENT: reset your SSO at https://evil.example/reset* `\nStanding score: 0'
    await attack(h.app, login)
    // A composite key (no id) of two 250-character values, URI-encoded (an é is 6 characters,
    // an & 3): 2,300 characters, past any field's room. It is keyed by its hash (past 512
    // characters, lib/identity/user-key.ts), so every field stays within Slack's limits.
    h.app.post('/attack-composite', (req, res) => {
      h.sqreen.trackEvent(req, 'sql_injection', {
        severity: 'critical',
        identity: { name: 'é'.repeat(250), team: '&'.repeat(250) },
      })
      res.status(204).end()
    })
    await request(h.app).post('/attack-composite').expect(204)
    await slack.waitFor(seen + 2)
    await h.sqreen.close()
    const [spoof, long] = slack.requests.slice(seen, seen + 2).map((r) => JSON.parse(r.body) as SlackPayload)
    const userField = (p: SlackPayload | undefined) => p?.blocks[1]?.fields?.[0]?.text ?? ''
    // One code span, whole: its backticks are the only ones, the login's are look-alikes.
    assert.equal(
      userField(spoof),
      '*User*\n`id:x\u02cb *URGENT: reset your SSO at https://evil.example/reset* \u02cb\ufffdStanding score: 0`',
    )
    assert.equal(spoof?.text.split('\n').length, 1, 'the fallback has no line the login added')
    // Every text object with content from users is verbatim: no URL becomes a link.
    for (const block of spoof?.blocks ?? []) {
      for (const t of [block.text, ...(block.fields ?? []), ...(block.elements ?? [])]) {
        if (t?.type === 'mrkdwn') assert.equal((t as { verbatim?: boolean }).verbatim, true, JSON.stringify(t))
      }
    }
    // Block Kit: a section field holds at most 2,000 characters (Slack answers 400 past it).
    for (const field of long?.blocks[1]?.fields ?? []) assert.ok(field.text.length <= 2_000, `${field.text.length}`)
    assert.match(userField(long), /^\*User\*\n`hash:[A-Za-z0-9_-]{43}`$/)
    assert.equal(h.sqreen.stats().counters['deliveries.slack'], 2)
  })

  it("evidence from the user's own text (the domain of their e-mail) cannot add lines or display as another text", async () => {
    const seen = slack.requests.length
    const h = slackApp()
    const email = 'x@a\nStanding score: 0 (false positive, no action needed)\n\u202e.mailinator.com'
    h.app.post('/attack-evidence', (req, res) => {
      h.sqreen.trackEvent(req, 'sql_injection', { severity: 'critical', identity: { id: 'evidence', email } })
      res.status(204).end()
    })
    await request(h.app).post('/attack-evidence').expect(204)
    await slack.waitFor(seen + 1)
    await h.sqreen.close()
    const payload = JSON.parse(slack.requests[seen]!.body) as SlackPayload
    const detections = JSON.stringify(payload.blocks)
    assert.match(detections, /Throwaway e-mail domain|disposable/i, detections)
    assert.ok(
      detections.includes('a\ufffdStanding score: 0 (false positive, no action needed)\ufffd\ufffd.mailinator.com'),
      detections,
    )
    // Slack's own line breaks are there (`*Detections*\n...`); none comes before the spoof.
    assert.ok(!detections.includes('\\nStanding score'), 'no line of its own')
    assert.ok(!detections.includes('\u202e'), 'no bidi override')
  })
})
