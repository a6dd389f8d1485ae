/**
 * The issue's end-to-end scenarios, with real logins over HTTP on both
 * Express/Passport pairs and all three real receivers (a Slack-like server, an
 * SMTP server, a verifying webhook receiver): a brute force then a success
 * alerts exactly once, everywhere, for the right user; typos do not alert;
 * several users' alerts are not mixed up; without channels alerts are logged; a
 * throwing onAlert stops nothing; advanced mode leaks no personal data anywhere;
 * the trigger's window follows the clock; close() waits for deliveries, bounded.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { anonEmail, MemoryStore, type Options, type RiskAlert } from '../lib/index.js'
import { type Harness, type Variant, variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  failLogins,
  login,
  type SlackPayload,
  SlackReceiver,
  SmtpReceiver,
  USERS,
  type User,
  userByLogin,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

const WEBHOOK_SECRET = 'scenarios-webhook-secret-0123456789'
const SECRET = 'scenarios-advanced-secret-0123456789'
const FAST = { baseDelay: 10, maxDelay: 50 } as const

/** The three real receivers, fresh per test so counts start at zero. */
interface Receivers {
  readonly slack: SlackReceiver
  readonly smtp: SmtpReceiver
  readonly webhook: WebhookReceiver
  /** The sqreenAuth options that send to all three. */
  readonly options: Partial<Options>
  close(): Promise<void>
}

const receivers = async (now?: () => number): Promise<Receivers> => {
  const [slack, smtp, webhook] = await Promise.all([
    SlackReceiver.start(),
    SmtpReceiver.start(),
    WebhookReceiver.start(WEBHOOK_SECRET, now),
  ])
  return {
    slack,
    smtp,
    webhook,
    options: {
      slack: slack.url,
      email: { transport: smtp.transport, from: 'alerts@example.com', to: 'soc@example.com' },
      webhook: { url: webhook.url, secret: WEBHOOK_SECRET },
      delivery: FAST,
    },
    close: async () => {
      await Promise.all([slack.close(), smtp.close(), webhook.close()])
    },
  }
}

/** The user an alert is about, as each channel shows it. */
const slackUser = (p: SlackPayload): string | undefined =>
  p.blocks
    .flatMap((b) => b.fields ?? [])
    .find((f) => f.text.startsWith('*User*'))
    ?.text.match(/`(.*)`/)?.[1]
const slackIp = (p: SlackPayload): string | undefined =>
  p.blocks
    .flatMap((b) => b.fields ?? [])
    .find((f) => f.text.startsWith('*Last IP*'))
    ?.text.split('\n')[1]
const mailUser = (subject: string): string | undefined => subject.split(': ').pop()

/** An app that can look accounts up: failed logins count against the account at once. */
const lookupLogin = (login: string) => {
  const u = userByLogin(login)
  return u && { id: u.id, email: u.email, username: u.username }
}

const PII = (users: readonly User[]): string[] =>
  users.flatMap((u) => [u.email.toLowerCase(), u.email.split('@')[0]!.toLowerCase(), u.username.toLowerCase()])

const assertNoPii = (where: string, text: string, users: readonly User[] = USERS): void => {
  const lower = text.toLowerCase()
  for (const needle of PII(users)) assert.ok(!lower.includes(needle), `"${needle}" leaked into ${where}:\n${text}`)
}

const suite = (variant: Variant): void => {
  let r: Receivers
  before(async () => {
    r = await receivers()
  })
  after(() => r.close())
  // Each test checks counts relative to what the shared receivers had before it.
  const mark = () => ({ slack: r.slack.requests.length, smtp: r.smtp.mails.length, webhook: r.webhook.requests.length })

  it('a 10-failure brute force alerts once on all three channels for the right user; the success that ends it alerts again (a takeover)', async () => {
    const seen = mark()
    const jane = USERS[0]!
    const alerts: RiskAlert[] = []
    const now = Date.now()
    // Our own store outlives close(), so the ledger can be read once everything is drained.
    const store = new MemoryStore()
    const h = alertApp(variant, {
      ...r.options,
      store,
      identifyLogin: lookupLogin,
      clock: () => now,
      onAlert: (a) => void alerts.push(a),
    })
    await failLogins(h.app, jane.username, 10, { ip: '198.51.100.7' })
    assert.equal((await login(h.app, jane.username, jane.password, { ip: '198.51.100.7' })).status, 200)
    await h.log.waitFor(11)
    await h.sqreen.close()

    assert.equal(alerts.length, 2, `alerts: ${JSON.stringify(alerts.map((a) => [a.userKey, a.level]))}`)
    assert.equal(r.slack.requests.length, seen.slack + 2)
    assert.equal(r.smtp.mails.length, seen.smtp + 2)
    assert.equal(r.webhook.requests.length, seen.webhook + 2)
    // The second: the takeover, for the same user, with the whole story, said as such.
    const takeover = alerts[1]!
    assert.equal(takeover.userKey, 'id:1')
    assert.equal(takeover.takeover, true)
    assert.equal(alerts[0]?.takeover, undefined)
    assert.match(
      r.smtp.mails[seen.smtp + 1]?.subject ?? '',
      /^\[sqreen-auth\] Possible account takeover: user risk rose by 44 points in 24h: id:1$/,
    )
    assert.equal(takeover.rise, 44)
    assert.deepEqual(
      takeover.detections.map((d) => d.detection),
      [...Array(5).fill('wrong_password'), 'failure_burst', 'brute_force', 'success_after_brute_force'],
    )
    const alert = alerts[0]!
    assert.equal(alert.userKey, 'id:1')
    assert.deepEqual(alert.identity, { id: 1, email: jane.email, username: jane.username })
    assert.deepEqual(
      alert.detections.map((d) => d.detection),
      [...Array(5).fill('wrong_password'), 'failure_burst', 'brute_force'],
    )
    assert.equal(slackUser(r.slack.payloads[seen.slack]!), 'id:1')
    assert.equal(mailUser(r.smtp.mails[seen.smtp]!.subject), 'id:1')
    const delivered = r.webhook.deliveries[seen.webhook]!
    assert.equal(delivered.error, undefined)
    assert.equal(delivered.alert?.id, alert.id)
    assert.equal(delivered.alert?.userKey, 'id:1')
    // The success was scored too (+20 after a brute force).
    const risk = await h.sqreen.risk('id:1')
    await store.close()
    assert.ok(risk.entries.some((e) => e.detection === 'success_after_brute_force'))
    assert.equal(risk.rise24h, 44)
  })

  it('a brute force on a login nobody could look up alerts under the login; the success that ends it alerts under the account', async () => {
    const seen = mark()
    const jane = USERS[0]!
    const alerts: RiskAlert[] = []
    const store = new MemoryStore()
    const h = alertApp(variant, { ...r.options, store, onAlert: (a) => void alerts.push(a) })
    await failLogins(h.app, jane.username, 10, { ip: '198.51.100.8' })
    assert.equal((await login(h.app, jane.username, jane.password, { ip: '198.51.100.8' })).status, 200)
    await h.log.waitFor(11)
    await h.sqreen.close()
    assert.deepEqual(
      alerts.map((a) => a.userKey),
      [`login:${jane.username}`, 'id:1'],
    )
    // The account's alert is the takeover: the login's brute force came over with the ledger.
    assert.ok(alerts[1]?.detections.some((d) => d.detection === 'success_after_brute_force'))
    assert.equal(r.slack.requests.length, seen.slack + 2)
    assert.equal(r.smtp.mails.length, seen.smtp + 2)
    assert.equal(r.webhook.requests.length, seen.webhook + 2)
    // The login's ledger now belongs to the account.
    const risk = await h.sqreen.risk('id:1')
    await store.close()
    assert.deepEqual([...new Set(risk.entries.map((e) => e.detection))].sort(), [
      'brute_force',
      'failure_burst',
      'success_after_brute_force',
      'wrong_password',
    ])
  })

  it('6 typos then a success from the same device do not alert', async () => {
    const seen = mark()
    const jane = USERS[0]!
    const alerts: RiskAlert[] = []
    const store = new MemoryStore()
    const h = alertApp(variant, { ...r.options, store, onAlert: (a) => void alerts.push(a) })
    const from = { ip: '198.51.100.9' }
    // A first login sets the device baseline, then the user mistypes six times.
    assert.equal((await login(h.app, jane.username, jane.password, from)).status, 200)
    await failLogins(h.app, jane.username, 6, from)
    assert.equal((await login(h.app, jane.username, jane.password, from)).status, 200)
    await h.log.waitFor(8)
    await h.sqreen.close()
    assert.deepEqual(alerts, [])
    assert.equal(r.slack.requests.length, seen.slack)
    assert.equal(r.smtp.mails.length, seen.smtp)
    assert.equal(r.webhook.requests.length, seen.webhook)
    // Just below the trigger: five wrong passwords (capped) and a burst, no device points.
    const risk = await h.sqreen.risk('id:1')
    await store.close()
    assert.equal(risk.rise24h, 9)
    assert.ok(!risk.entries.some((e) => e.detection === 'new_device'))
  })

  it('3 alerts for 3 users attacked at once are not mixed up on any channel', async () => {
    const seen = mark()
    const ips = ['198.51.100.31', '203.0.113.32', '192.0.2.33']
    const shown = ['198.51.100.0/24', '203.0.113.0/24', '192.0.2.0/24']
    const h = alertApp(variant, { ...r.options, identifyLogin: lookupLogin })
    // Interleaved: round i sends every user's i-th wrong password concurrently.
    for (let i = 0; i < 10; i++) {
      await Promise.all(USERS.map((u, n) => login(h.app, u.username, `wrong-${i}`, { ip: ips[n]! })))
    }
    await h.log.waitFor(30)
    await h.sqreen.close()

    const slack = r.slack.payloads.slice(seen.slack)
    const mails = r.smtp.mails.slice(seen.smtp)
    const hooks = r.webhook.deliveries.slice(seen.webhook)
    assert.equal(slack.length, 3)
    assert.equal(mails.length, 3)
    assert.equal(hooks.length, 3)
    USERS.forEach((user, n) => {
      const key = `id:${user.id}`
      const inSlack = slack.filter((p) => slackUser(p) === key)
      assert.equal(inSlack.length, 1, `${key} on Slack`)
      assert.equal(slackIp(inSlack[0]!), shown[n])
      const inMail = mails.filter((m) => mailUser(m.subject) === key)
      assert.equal(inMail.length, 1, `${key} by e-mail`)
      assert.match(inMail[0]!.text, new RegExp(`^User: ${key}$`, 'm'))
      assert.match(inMail[0]!.text, new RegExp(`^Last IP: ${shown[n]!.replace(/\./g, '\\.')}$`, 'm'))
      const inHook = hooks.filter((d) => d.alert?.userKey === key)
      assert.equal(inHook.length, 1, `${key} by webhook`)
      const alert = inHook[0]!.alert!
      assert.equal(alert.identity.email, user.email)
      assert.equal(alert.ip, shown[n])
      // Every detection in the alert is this user's own, from this user's IP.
      // wrong_password entries carry no evidence (memory budget); every other one names the IP.
      for (const d of alert.detections) if (d.detection !== 'wrong_password') assert.equal(d.evidence?.ip, shown[n])
      assert.ok(alert.detections.some((d) => d.evidence?.ip === shown[n]))
    })
  })

  it('with no channel configured the alert goes to the logger', async () => {
    const h = alertApp(variant)
    await failLogins(h.app, USERS[1]!.username, 10, { ip: '198.51.100.40' })
    await h.log.waitFor(10)
    await h.sqreen.close()
    const alertLines = h.logger.lines.filter((l) => l.includes('User risk rose by'))
    assert.equal(alertLines.length, 1, h.logger.lines.join('\n'))
    const line = alertLines[0]!
    assert.ok(line.startsWith('warn [sqreen-auth] User risk rose by 24 points in 24h (threshold: more than 10).'), line)
    assert.match(line, /^User: login:bbuilder-private$/m)
    assert.match(line, /^Last IP: 198\.51\.100\.0\/24$/m)
    assert.match(line, /Brute force \(\+15\)/)
  })

  it('an onAlert that throws does not stop Slack, e-mail or the webhook', async () => {
    const seen = mark()
    let calls = 0
    const h = alertApp(variant, {
      ...r.options,
      onAlert: () => {
        calls++
        throw new Error('onAlert is broken')
      },
    })
    await attack(h.app, 'u-throwing')
    await r.slack.waitFor(seen.slack + 1)
    await r.smtp.waitFor(seen.smtp + 1)
    await r.webhook.waitFor(seen.webhook + 1)
    await h.sqreen.close()
    assert.equal(calls, 1)
    assert.equal(h.sqreen.stats().problems['on_alert_threw'], 1)
    assert.ok(h.logger.lines.some((l) => l.startsWith('error ') && l.includes('on_alert_threw')))
    assert.equal(r.webhook.verified.at(-1)?.userKey, 'id:u-throwing')
  })

  it('an onAlert that rejects does not stop the other channels either', async () => {
    const seen = mark()
    const h = alertApp(variant, { ...r.options, onAlert: () => Promise.reject(new Error('async onAlert failed')) })
    await attack(h.app, 'u-rejecting')
    await r.slack.waitFor(seen.slack + 1)
    await r.smtp.waitFor(seen.smtp + 1)
    await r.webhook.waitFor(seen.webhook + 1)
    await h.sqreen.close()
    assert.equal(h.sqreen.stats().problems['on_alert_rejected'], 1)
  })

  describe('advanced mode', () => {
    const advanced = (extra: Partial<Options> = {}): Harness =>
      alertApp(variant, {
        mode: 'advanced',
        secret: SECRET,
        identify: (u: User) => ({ id: u.id, email: anonEmail(u.id, u.email) }),
        ...extra,
      })

    /** Two brute forces (by username, by e-mail address), each followed by the user's success. */
    const attackTwo = async (h: Harness): Promise<void> => {
      const [jane, bob] = [USERS[0]!, USERS[1]!]
      await failLogins(h.app, jane.username, 10, { ip: '198.51.100.50' })
      assert.equal((await login(h.app, jane.username, jane.password, { ip: '198.51.100.50' })).status, 200)
      await failLogins(h.app, bob.email, 10, { ip: '198.51.100.51' })
      assert.equal((await login(h.app, bob.email, bob.password, { ip: '198.51.100.51' })).status, 200)
      await h.log.waitFor(22)
    }

    it('no raw e-mail, username or login in any alert (Slack, mail, webhook) or log line', async () => {
      const seen = mark()
      const h = advanced(r.options)
      await attackTwo(h)
      await h.sqreen.close()
      const slack = r.slack.requests.slice(seen.slack)
      const mails = r.smtp.mails.slice(seen.smtp)
      const hooks = r.webhook.deliveries.slice(seen.webhook)
      // Four alerts per channel, so the checks below look at real alerts: per user, the
      // brute force under the login's pseudonym, then the takeover under the account.
      assert.equal(slack.length, 4)
      assert.equal(mails.length, 4)
      assert.equal(hooks.length, 4)
      for (const s of slack) assertNoPii('a Slack message', s.body)
      for (const m of mails) {
        assertNoPii('a mail subject', m.subject)
        assertNoPii('a mail text part', m.text)
        assertNoPii('a mail HTML part', m.html)
        assertNoPii('a raw mail', m.raw)
      }
      for (const d of hooks) assertNoPii('a webhook body', d.request.body)
      assert.deepEqual(
        hooks.map((d) => /^login:[A-Za-z0-9_-]{43}$/.test(d.alert?.userKey ?? '') || d.alert?.userKey),
        [true, 'id:1', true, 'id:2'],
      )
      assert.deepEqual(
        hooks.map((d) => d.alert?.identity),
        [
          { loginHash: hooks[0]?.alert?.userKey.slice('login:'.length) },
          { id: 1, email: 'anon-1@example.org' },
          { loginHash: hooks[2]?.alert?.userKey.slice('login:'.length) },
          { id: 2, email: 'anon-2@example.net' },
        ],
      )
      for (const line of h.logger.lines) assertNoPii('a log line', line)
      for (const e of h.log.events) assertNoPii('an event', JSON.stringify(e))
    })

    it('with identifyLogin the alert names the account by id and anon e-mail only', async () => {
      const seen = mark()
      const h = advanced({
        ...r.options,
        identifyLogin: (l: string) => {
          const u = userByLogin(l)
          return u && { id: u.id, email: anonEmail(u.id, u.email) }
        },
      })
      await attackTwo(h)
      await h.sqreen.close()
      const hooks = r.webhook.deliveries.slice(seen.webhook)
      // Per user: the brute force, then the takeover, both under the account.
      assert.deepEqual(
        hooks.map((d) => d.alert?.identity),
        [
          { id: 1, email: 'anon-1@example.org' },
          { id: 1, email: 'anon-1@example.org' },
          { id: 2, email: 'anon-2@example.net' },
          { id: 2, email: 'anon-2@example.net' },
        ],
      )
      for (const d of hooks) assertNoPii('a webhook body', d.request.body)
      for (const s of r.slack.requests.slice(seen.slack)) assertNoPii('a Slack message', s.body)
      for (const m of r.smtp.mails.slice(seen.smtp)) assertNoPii('a mail', `${m.subject}\n${m.text}\n${m.html}`)
      assert.deepEqual(
        r.smtp.mails.slice(seen.smtp).map((m) => mailUser(m.subject)),
        ['id:1', 'id:1', 'id:2', 'id:2'],
      )
    })

    it('alerts written to the logger (no channel) carry no personal data either', async () => {
      const h = advanced()
      await attackTwo(h)
      await h.sqreen.close()
      const alertLines = h.logger.lines.filter((l) => / risk rose by /.test(l))
      assert.equal(alertLines.length, 4, h.logger.lines.join('\n'))
      // Per user, the brute force, then the takeover, said as such.
      assert.deepEqual(
        alertLines.map((l) => l.includes('Possible account takeover: user risk rose by')),
        [false, true, false, true],
      )
      for (const line of h.logger.lines) assertNoPii('a log line', line)
    })
  })
}

for (const variant of variants) describe(`alert scenarios (${variant.name})`, () => suite(variant))

describe('alert scenarios: time and shutdown', () => {
  const variant = variants[0]!

  it('the trigger window follows the clock: once per 24 h for a user, again after the window', async () => {
    // Far from the real time, so only the clock can be the source of event and alert times.
    let now = Date.parse('2031-03-04T05:06:07.000Z')
    const r = await receivers(() => now)
    const alerts: RiskAlert[] = []
    const h = alertApp(variant, { ...r.options, clock: () => now, onAlert: (a) => void alerts.push(a) })
    const jane = USERS[0]!
    const from = { ip: '198.51.100.60' }
    try {
      await failLogins(h.app, jane.username, 10, from)
      await h.log.waitFor(10)
      await h.sqreen.close()
    } finally {
      await r.close()
    }
    assert.equal(h.log.events[0]?.at, '2031-03-04T05:06:07.000Z', 'event time comes from the clock')
    assert.equal(alerts.length, 1)
    assert.equal(alerts[0]?.at, '2031-03-04T05:06:07.000Z')
    assert.equal(r.webhook.verified.length, 1, 'the webhook timestamp follows the clock too')

    // The same brute force again one hour later (inside the window: no second alert), then
    // 26 hours after the first (outside it: a new alert).
    now = Date.parse('2031-03-04T05:06:07.000Z')
    const later: RiskAlert[] = []
    const h2 = alertApp(variant, { clock: () => now, onAlert: (a) => void later.push(a) })
    await failLogins(h2.app, jane.username, 10, from)
    await h2.log.waitFor(10)
    now += 3_600_000
    await failLogins(h2.app, jane.username, 10, from)
    await h2.log.waitFor(20)
    now += 25 * 3_600_000
    await failLogins(h2.app, jane.username, 10, from)
    await h2.log.waitFor(30)
    await h2.sqreen.close()
    assert.deepEqual(
      later.map((a) => a.at),
      ['2031-03-04T05:06:07.000Z', '2031-03-05T07:06:07.000Z'],
    )
  })

  it('close() waits for deliveries in flight and for their retries', async () => {
    const r = await receivers()
    r.slack.script({ status: 200, delayMs: 300 })
    r.webhook.script(500, 200)
    const h = alertApp(variant, r.options)
    try {
      await attack(h.app, 'u-closing')
      await r.slack.waitFor(1)
      const started = Date.now()
      await h.sqreen.close()
      const took = Date.now() - started
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries.slack'], 1, 'the slow Slack answer was awaited')
      assert.equal(counters['deliveries.webhook'], 1, 'the webhook retry was awaited')
      assert.equal(counters['deliveries.email'], 1)
      assert.equal(r.webhook.requests.length, 2)
      assert.ok(took >= 200, `close() returned after ${took} ms, before Slack answered`)
    } finally {
      await r.close()
    }
  })

  it('close() is bounded: a retry far in the future is abandoned and counted', async () => {
    const slack = (await SlackReceiver.start()).script(500)
    // The retry would come 30-60 s later; close() must not wait for it.
    const h = alertApp(variant, {
      slack: slack.url,
      delivery: { baseDelay: 60_000, maxDelay: 60_000, closeTimeout: 300 },
    })
    try {
      await attack(h.app, 'u-abandoned')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_retried.slack'] === 1, 'the retry to be scheduled')
      const started = Date.now()
      await h.sqreen.close()
      const took = Date.now() - started
      assert.ok(took >= 250 && took < 2_000, `close() took ${took} ms (closeTimeout 300)`)
      assert.equal(h.sqreen.stats().counters['deliveries_abandoned'], 1)
      assert.equal(slack.requests.length, 1)
    } finally {
      await slack.close()
    }
  })
})
