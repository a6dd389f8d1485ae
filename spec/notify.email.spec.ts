/**
 * E-mail alerts through nodemailer to a real SMTP server (`smtp-server` on
 * 127.0.0.1): the mail has a subject, a text part and an HTML part; in advanced
 * mode none of them carries personal data; a server that is down, refuses for a
 * while or never greets is retried, then dropped and counted, without touching
 * the logins; the transport's timeouts are far below nodemailer's.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { SMTPServer } from 'smtp-server'
import { anonEmail, type Options, type SqreenAuth } from '../lib/index.js'
import { EMAIL_TIMEOUTS } from '../lib/notify/email.js'
import { variants } from './helpers/apps.js'
import {
  alertApp,
  attack,
  failLogins,
  login,
  type ReceivedMail,
  SilentServer,
  SmtpReceiver,
  serve,
  USERS,
  WebhookReceiver,
  waitUntil,
} from './helpers/receivers.js'

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const FAST = { baseDelay: 10, maxDelay: 50 } as const
const FROM = 'sqreen-alerts@example.com'
const TO = ['soc@example.com', 'oncall@example.com']
const SECRET = 'email-spec-secret-0123456789abcdef'

const emailOptions = (smtp: SmtpReceiver, extra: Partial<Options> = {}): Partial<Options> => ({
  email: { transport: smtp.transport, from: FROM, to: TO },
  delivery: FAST,
  ...extra,
})

/** Resolves once the e-mail channel delivered or dropped a mail. */
const settled = (sqreen: SqreenAuth): Promise<void> =>
  waitUntil(() => {
    const { counters } = sqreen.stats()
    return counters['deliveries.email'] !== undefined || counters['deliveries_failed.email'] !== undefined
  }, 'the mail to be delivered or dropped')

/** Everything a person could read in the mail, lower-cased. */
const readable = (mail: ReceivedMail): string =>
  `${mail.subject}\n${mail.text}\n${mail.html}\n${mail.raw}`.toLowerCase()

describe('e-mail alerts', () => {
  let smtp: SmtpReceiver
  before(async () => {
    smtp = await SmtpReceiver.start()
  })
  after(() => smtp.close())

  it('a real SMTP server receives one mail with the subject, a text part and an HTML part', async () => {
    const received = smtp.mails.length
    const h = alertApp(variant, emailOptions(smtp))
    await attack(h.app, 'u-42')
    await smtp.waitFor(received + 1)
    await h.sqreen.close()
    assert.equal(smtp.mails.length, received + 1, 'exactly one mail per alert')
    const mail = smtp.mails[received]!
    assert.equal(mail.from, FROM)
    assert.deepEqual(mail.to, TO)
    assert.equal(mail.subject, '[sqreen-auth] User risk rose by 20 points in 24h: id:u-42')
    assert.match(mail.contentType, /^multipart\/alternative/i)
    // Both parts carry the facts: who, how much, why.
    assert.match(mail.text, /User: id:u-42/)
    assert.match(mail.text, /Standing score: 20/)
    assert.match(mail.text, /Attack reported by the app \(critical\) \(\+20\)/)
    assert.match(mail.html, /<h1[^>]*>User risk rose by 20 points in 24h<\/h1>/)
    assert.match(mail.html, /<code>id:u-42<\/code>/)
    assert.match(mail.html, /<li>Attack reported by the app \(critical\) \(\+20\)/)
    assert.equal(h.sqreen.stats().counters['deliveries.email'], 1)
  })

  it('a user key written by an attacker: cut in the subject, format characters replaced everywhere', async () => {
    const received = smtp.mails.length
    const h = alertApp(variant, emailOptions(smtp))
    // A right-to-left override makes "admin\u202e@moc.elpmaxe" display as another address;
    // a long key reads as an instruction in the subject line.
    const id =
      'admin\u202e@moc.elpmaxe\u200b false positive: scheduled pentest, no action needed https://evil.example/t'
    await attack(h.app, id)
    await smtp.waitFor(received + 1)
    await h.sqreen.close()
    const mail = smtp.mails[received]!
    const shown = `id:${id}`.replace(/[\u202e\u200b]/g, '\ufffd')
    assert.equal(mail.subject, `[sqreen-auth] User risk rose by 20 points in 24h: ${shown.slice(0, 63)}…`)
    assert.doesNotMatch(mail.subject, /evil\.example/)
    assert.match(mail.text, /User: id:admin\ufffd@moc\.elpmaxe\ufffd false positive/)
    for (const part of [mail.subject, mail.text, mail.html]) assert.doesNotMatch(part, /[\u202e\u200b]/)
  })

  it('an SMTP URL works as the transport', async () => {
    const received = smtp.mails.length
    const h = alertApp(variant, {
      email: { transport: `smtp://127.0.0.1:${smtp.port}`, from: FROM, to: 'soc@example.com' },
      delivery: FAST,
    })
    await attack(h.app, 'u-url')
    await smtp.waitFor(received + 1)
    await h.sqreen.close()
    assert.deepEqual(smtp.mails[received]?.to, ['soc@example.com'])
    assert.match(smtp.mails[received]?.subject ?? '', /: id:u-url$/)
  })

  it('advanced mode: subject, text and HTML carry only ids and pseudonyms, no e-mail, username or login', async () => {
    const received = smtp.mails.length
    const [jane, bob] = [USERS[0]!, USERS[1]!]
    const h = alertApp(
      variant,
      emailOptions(smtp, {
        mode: 'advanced',
        secret: SECRET,
        identify: (u: { id: number; email: string }) => ({ id: u.id, email: anonEmail(u.id, u.email) }),
      }),
    )
    // Jane is brute-forced by username and then logs in; Bob by e-mail address.
    await failLogins(h.app, jane.username, 10, { ip: '203.0.113.10' })
    assert.equal((await login(h.app, jane.username, jane.password, { ip: '203.0.113.10' })).status, 200)
    await failLogins(h.app, bob.email, 10, { ip: '198.51.100.20' })
    await smtp.waitFor(received + 3)
    await h.sqreen.close()
    const mails = smtp.mails.slice(received)
    // Each brute force under its login's pseudonym, and Jane's takeover under her id.
    assert.equal(mails.length, 3, mails.map((m) => m.subject).join('\n'))
    assert.deepEqual(
      mails.map((m) => /: login:[A-Za-z0-9_-]{43}$/.test(m.subject) || m.subject.split(': ').pop()),
      [true, 'id:1', true],
    )
    for (const mail of mails) {
      assert.match(
        mail.subject,
        /^\[sqreen-auth\] (User|Possible account takeover: user) risk rose by \d+ points in 24h: (login:[A-Za-z0-9_-]{43}|id:1)$/,
      )
      assert.ok(mail.text.length > 0 && mail.html.length > 0)
      const text = readable(mail)
      for (const user of [jane, bob]) {
        for (const pii of [user.email, user.username, user.email.split('@')[0]!]) {
          assert.ok(!text.includes(pii.toLowerCase()), `"${pii}" leaked into the mail:\n${text}`)
        }
      }
    }
    assert.notEqual(mails[0]?.subject, mails[1]?.subject, 'two users, two pseudonyms')
  })

  it('a transport that never answers is bounded by delivery.timeout: webhooks keep flowing, each mail is dropped and counted', async () => {
    const secret = 'email-spec-webhook-secret-0123456789'
    const webhook = await WebhookReceiver.start(secret)
    // A ready-made transport object (the application's own) whose sendMail never settles.
    const hung = { sendMail: () => new Promise<never>(() => {}) }
    const h = alertApp(variant, {
      email: { transport: hung, from: FROM, to: TO },
      webhook: { url: webhook.url, secret },
      delivery: { timeout: 200, retries: 0, baseDelay: 10, maxDelay: 50 },
    })
    const app = await serve(h.app)
    try {
      // More alerts than the queue has workers: without the bound, hung mails take them all.
      for (let i = 0; i < 8; i++) await attack(app.url, `u-hung-${i}`)
      await waitUntil(() => webhook.verified.length === 8, '8 webhooks while the mails hang', 5000)
      await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.email'] === 8, '8 mails dropped', 5000)
      assert.equal(h.sqreen.stats().counters['deliveries.email'], undefined)
      assert.ok(
        h.logger.lines.some((l) => l.includes('delivery_failed.email') && l.includes('no answer within 200 ms')),
        h.logger.lines.join('\n'),
      )
    } finally {
      await h.sqreen.close()
      await app.close()
      await webhook.close()
    }
  })

  it('a send given up on is never sent again (it may still go out), and its late outcome is counted', async () => {
    let calls = 0
    // The application's own transport, slower than delivery.timeout but working.
    const slow = {
      sendMail: () => {
        calls++
        return new Promise((resolve) => setTimeout(resolve, 300))
      },
    }
    const h = alertApp(variant, {
      email: { transport: slow, from: FROM, to: TO },
      delivery: { timeout: 100, retries: 2, baseDelay: 10, maxDelay: 50 },
    })
    const app = await serve(h.app)
    try {
      await attack(app.url, 'u-slow')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_late.email'] === 1, 'the late outcome', 3000)
      const { counters } = h.sqreen.stats()
      assert.equal(calls, 1, 'one send, no retry of a mail that may have gone out')
      assert.equal(counters['deliveries_failed.email'], 1)
      assert.equal(counters['deliveries_retried.email'], undefined)
      assert.ok(
        h.logger.lines.some((l) => l.includes('outcome unknown')),
        h.logger.lines.join('\n'),
      )
    } finally {
      await h.sqreen.close()
      await app.close()
    }
  })

  it('SMTP down: the delivery is retried `retries` times, then dropped and counted; logins stay fast', async () => {
    const down = await SmtpReceiver.start()
    await down.down()
    const h = alertApp(variant, emailOptions(down, { delivery: { retries: 2, baseDelay: 20, maxDelay: 50 } }))
    const app = await serve(h.app)
    try {
      const baseline = await login(app.url, USERS[0]!.username, USERS[0]!.password)
      await attack(app.url, 'u-down')
      // Logins while the mail is being retried against a dead server.
      const during = []
      for (let i = 0; i < 5; i++) during.push(await login(app.url, USERS[0]!.username, USERS[0]!.password))
      await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.email'] === 1, 'the mail to be dropped')
      assert.equal(baseline.status, 200)
      for (const l of during) {
        assert.equal(l.status, 200)
        assert.ok(l.ms < 250, `a login took ${l.ms.toFixed(0)} ms while SMTP was down`)
      }
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries_retried.email'], 2)
      assert.equal(counters['deliveries.email'], undefined)
      const line = h.logger.lines.find((l) => l.includes('delivery_failed.email'))
      assert.ok(line?.startsWith('error '), h.logger.lines.join('\n'))
      assert.match(line ?? '', /after 3 attempt\(s\)/)
    } finally {
      await h.sqreen.close()
      await app.close()
    }
  })

  it('a temporary refusal (451 after DATA) is retried and the mail delivered', async () => {
    const received = smtp.mails.length
    const attempts = smtp.attempts.length
    smtp.reject({ code: 451 })
    const h = alertApp(variant, emailOptions(smtp))
    await attack(h.app, 'u-451')
    await settled(h.sqreen)
    await h.sqreen.close()
    assert.deepEqual(
      smtp.attempts.slice(attempts).map((a) => a.code),
      [451, 250],
    )
    assert.match(smtp.mails[received]?.subject ?? '', /: id:u-451$/)
    assert.equal(h.sqreen.stats().counters['deliveries.email'], 1)
  })

  it('a temporary refusal of the recipient (450 at RCPT TO) is retried and the mail delivered', async () => {
    const received = smtp.mails.length
    const attempts = smtp.attempts.length
    smtp.reject({ code: 450, stage: 'rcpt' })
    const h = alertApp(variant, emailOptions(smtp, { email: { transport: smtp.transport, from: FROM, to: TO[0]! } }))
    await attack(h.app, 'u-450')
    await settled(h.sqreen)
    await h.sqreen.close()
    assert.deepEqual(
      smtp.attempts.slice(attempts).map((a) => a.code),
      [450, 250],
    )
    assert.equal(smtp.mails.length, received + 1)
    assert.equal(h.sqreen.stats().counters['deliveries.email'], 1)
  })

  it('one recipient refused (550 at RCPT TO) while the other takes it: delivered, the refusal counted and logged', async () => {
    const received = smtp.mails.length
    smtp.reject({ code: 550, stage: 'rcpt' })
    const h = alertApp(variant, emailOptions(smtp))
    await attack(h.app, 'u-partial')
    await settled(h.sqreen)
    await h.sqreen.close()
    assert.equal(smtp.mails.length, received + 1)
    const { counters, problems } = h.sqreen.stats()
    assert.equal(counters['deliveries.email'], 1)
    assert.equal(counters.email_recipients_refused, 1)
    assert.equal(problems.email_recipients_refused, 1)
    assert.ok(h.logger.lines.some((l) => l.includes('refused 1 recipient(s)')))
  })

  it('a temporary authentication failure (454) is retried, not a reason to disable e-mail', async () => {
    let auths = 0
    const mails: string[] = []
    const server = new SMTPServer({
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onAuth(auth, _session, callback) {
        // RFC 4954: 454 4.7.0 Temporary authentication failure.
        if (auths++ === 0)
          return callback(Object.assign(new Error('Temporary authentication failure'), { responseCode: 454 }))
        callback(null, { user: auth.username })
      },
      onData(stream, _session, callback) {
        let raw = ''
        stream.on('data', (c: Buffer) => {
          raw += c.toString()
        })
        stream.on('end', () => {
          mails.push(raw)
          callback()
        })
      },
    })
    server.listen(0, '127.0.0.1')
    await once(server.server, 'listening')
    const port = (server.server.address() as AddressInfo).port
    const transport = { host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth: { user: 'alerts', pass: 'pw' } }
    const h = alertApp(variant, { email: { transport, from: FROM, to: TO }, delivery: FAST })
    try {
      await attack(h.app, 'u-454')
      await settled(h.sqreen)
      await h.sqreen.close()
      assert.equal(auths, 2)
      assert.equal(mails.length, 1)
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries.email'], 1)
      assert.equal(counters['deliveries_retried.email'], 1)
      assert.equal(h.sqreen.stats().problems['channel_disabled.email'], undefined)
    } finally {
      await new Promise<void>((r) => server.close(() => r()))
    }
  })

  it('a permanent refusal (550) is dropped without a retry and counted', async () => {
    const received = smtp.mails.length
    const attempts = smtp.attempts.length
    smtp.reject({ code: 550 })
    const h = alertApp(variant, emailOptions(smtp))
    await attack(h.app, 'u-550')
    await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.email'] === 1, 'the mail to be dropped')
    // close() drains: a retry, had one been scheduled, would have run by now.
    await h.sqreen.close()
    assert.deepEqual(
      smtp.attempts.slice(attempts).map((a) => a.code),
      [550],
    )
    assert.equal(smtp.mails.length, received)
    assert.equal(h.sqreen.stats().counters['deliveries_retried.email'], undefined)
  })

  it('the transport timeouts are far below nodemailer defaults', () => {
    // nodemailer's own defaults (lib/smtp-connection): 2 min to connect, 30 s for the
    // greeting, 10 min of socket inactivity, 30 s for DNS.
    const defaults = { connectionTimeout: 120_000, greetingTimeout: 30_000, socketTimeout: 600_000, dnsTimeout: 30_000 }
    for (const [name, fallback] of Object.entries(defaults)) {
      const ours = EMAIL_TIMEOUTS[name as keyof typeof EMAIL_TIMEOUTS]
      assert.ok(typeof ours === 'number' && ours > 0, `${name} is set`)
      assert.ok(ours <= fallback / 3 && ours <= 15_000, `${name} is ${ours} ms, nodemailer's default is ${fallback} ms`)
    }
  })

  it('an SMTP server that accepts the connection but never greets fails within the greeting timeout', async () => {
    const silent = await SilentServer.start()
    const h = alertApp(variant, {
      email: {
        transport: { host: '127.0.0.1', port: silent.port, secure: false, ignoreTLS: true, greetingTimeout: 300 },
        from: FROM,
        to: TO,
      },
      delivery: { retries: 0 },
    })
    try {
      const started = Date.now()
      await attack(h.app, 'u-silent')
      await waitUntil(
        () => h.sqreen.stats().counters['deliveries_failed.email'] === 1,
        'the silent server to time out',
        5000,
      )
      const elapsed = Date.now() - started
      assert.equal(silent.connections, 1, 'the mail went to the silent server')
      assert.ok(elapsed >= 250, `failed after ${elapsed} ms, before the greeting timeout`)
      assert.ok(elapsed < 2000, `failed after ${elapsed} ms: the greeting timeout was not applied`)
    } finally {
      await h.sqreen.close()
      await silent.close()
    }
  })
})
