/**
 * The socket timeouts of a transport sqreen-auth builds from SMTP options or an SMTP
 * URL (lib/notify/email.ts: EMAIL_TIMEOUTS spread into nodemailer's options), against
 * a real `smtp-server` that accepts the connection and then stalls. Such a transport is
 * not bounded by `delivery.timeout` (only a transport object the application passes is):
 * nodemailer's own timeouts are all that stop a send, so without EMAIL_TIMEOUTS a server
 * that never greets would hold the delivery for nodemailer's 30 s greeting timeout.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Server as TcpServer } from 'node:net'
import { describe, it } from 'node:test'
import { SMTPServer } from 'smtp-server'
import type { Options } from '../lib/index.js'
import { EMAIL_TIMEOUTS } from '../lib/notify/email.js'
import { variants } from './helpers/apps.js'
import { alertApp, attack, serve, USERS, waitUntil } from './helpers/receivers.js'

// Delivery is not Express/Passport behaviour: one variant is enough here.
const variant = variants[0]!
const FROM = 'sqreen-alerts@example.com'
const TO = ['soc@example.com']

/**
 * A real SMTP server that accepts TCP connections and then stalls: `'greeting'` never
 * sends the 220 greeting (its onConnect never answers), `'mail-from'` greets and
 * answers EHLO but never answers MAIL FROM. Records when each connection arrived and
 * when the client hung up.
 */
class StallingSmtp {
  readonly connections: { at: number; closedAt?: number }[] = []
  mailFrom = 0
  #server: SMTPServer | undefined
  #port = 0

  static async start(stall: 'greeting' | 'mail-from'): Promise<StallingSmtp> {
    const s = new StallingSmtp()
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      closeTimeout: 100,
      onConnect: (_session, callback) => {
        if (stall !== 'greeting') callback()
      },
      onMailFrom: (_address, _session, callback) => {
        s.mailFrom++
        if (stall !== 'mail-from') callback()
      },
      onData: (stream, _session, callback) => {
        stream.resume()
        stream.on('end', () => callback())
      },
    })
    server.on('error', () => {
      // The client hanging up on a stalled session is the point of these tests.
    })
    const net = (server as unknown as { server: TcpServer }).server
    net.on('connection', (socket) => {
      const entry: { at: number; closedAt?: number } = { at: Date.now() }
      s.connections.push(entry)
      socket.on('close', () => {
        entry.closedAt = Date.now()
      })
    })
    server.listen(0, '127.0.0.1')
    await once(net, 'listening')
    s.#port = (net.address() as { port: number }).port
    s.#server = server
    return s
  }

  get port(): number {
    return this.#port
  }

  /** nodemailer SMTP options for this server, with no timeout of their own. */
  get options(): Record<string, unknown> {
    return { host: '127.0.0.1', port: this.#port, secure: false, ignoreTLS: true }
  }

  async close(): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** An alert app whose only channel is e-mail through a transport sqreen-auth builds; one try, no retry. */
const mailApp = (transport: string | Record<string, unknown>, delivery: Options['delivery'] = {}) =>
  alertApp(variant, {
    email: { transport, from: FROM, to: TO },
    // delivery.timeout only bounds a transport object the application passes: 100 ms here
    // would cut these sends short if it applied, and the waits below prove it does not.
    delivery: { timeout: 100, retries: 0, baseDelay: 10, maxDelay: 50, ...delivery },
  })

const failedAfter = async (h: ReturnType<typeof mailApp>, started: number, ms: number): Promise<number> => {
  await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.email'] === 1, 'the mail to be dropped', ms)
  return Date.now() - started
}

describe('e-mail transport timeouts (a transport built from SMTP options or an SMTP URL)', () => {
  it('a server that never greets: the send gives up after EMAIL_TIMEOUTS.greetingTimeout (not nodemailer’s 30 s), counted, logins unaffected', async () => {
    const greeting = EMAIL_TIMEOUTS.greetingTimeout
    assert.equal(greeting, 5000, 'the documented 5 s')
    // Both ways of building the transport, at once: options without timeouts, and a URL.
    const byOptions = await StallingSmtp.start('greeting')
    const byUrl = await StallingSmtp.start('greeting')
    const apps = [mailApp(byOptions.options), mailApp(`smtp://127.0.0.1:${byUrl.port}`)]
    const server = await serve(apps[0]!.app)
    const jane = USERS[0]!
    try {
      const started = Date.now()
      await attack(server.url, 'u-no-greeting')
      await attack(apps[1]!.app, 'u-no-greeting-url')
      await waitUntil(
        () => byOptions.connections.length === 1 && byUrl.connections.length === 1,
        'both transports to connect',
      )
      // A login while the mail hangs on the silent server.
      const res = await fetch(`${server.url}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: jane.username, password: jane.password }),
      })
      assert.equal(res.status, 200)
      assert.equal(apps[0]!.sqreen.stats().counters['deliveries_failed.email'], undefined, 'still waiting')

      // A generous margin over 5 s for a busy machine, far below nodemailer's own 30 s.
      const elapsed = await Promise.all(apps.map((h) => failedAfter(h, started, greeting + 3000)))
      for (const [i, ms] of elapsed.entries()) {
        const which = i === 0 ? 'SMTP options' : 'SMTP URL'
        assert.ok(ms >= greeting - 100, `${which}: gave up after ${ms} ms, before the ${greeting} ms greeting timeout`)
        const h = apps[i]!
        const { counters } = h.sqreen.stats()
        assert.equal(counters['deliveries_failed.email'], 1, which)
        assert.equal(counters['deliveries.email'], undefined, which)
        assert.equal(counters['deliveries_late.email'], undefined, `${which}: not bounded by delivery.timeout`)
        const line = h.logger.lines.find((l) => l.includes('delivery_failed.email'))
        assert.match(line ?? '', /ETIMEDOUT/, `${which}: ${h.logger.lines.join('\n')}`)
      }
      // nodemailer closed the stalled connection when it gave up.
      for (const s of [byOptions, byUrl]) {
        await waitUntil(() => s.connections[0]?.closedAt !== undefined, 'the client to hang up', 1000)
        assert.equal(s.connections.length, 1, 'one attempt (retries: 0)')
        assert.equal(s.mailFrom, 0)
      }
    } finally {
      for (const h of apps) await h.sqreen.close()
      await server.close()
      await byOptions.close()
      await byUrl.close()
    }
  })

  it('a server that stalls after MAIL FROM: the socketTimeout given in the SMTP options wins over the default', async () => {
    const stalled = await StallingSmtp.start('mail-from')
    // The application's own timeout overrides EMAIL_TIMEOUTS.socketTimeout (10 s).
    const h = mailApp({ ...stalled.options, socketTimeout: 400 })
    try {
      const started = Date.now()
      await attack(h.app, 'u-stalled')
      const ms = await failedAfter(h, started, 3000)
      assert.equal(stalled.mailFrom, 1, 'the stall came after MAIL FROM')
      assert.ok(ms >= 350, `gave up after ${ms} ms, before the 400 ms socket timeout`)
      assert.ok(ms < 2500, `gave up after ${ms} ms`)
      assert.match(h.logger.lines.find((l) => l.includes('delivery_failed.email')) ?? '', /ETIMEDOUT/)
    } finally {
      await h.sqreen.close()
      await stalled.close()
    }
  })

  it('a timed-out send is retried like any temporary failure (a new connection per try)', async () => {
    const stalled = await StallingSmtp.start('greeting')
    const h = mailApp({ ...stalled.options, greetingTimeout: 200 }, { retries: 2, baseDelay: 20, maxDelay: 40 })
    try {
      await attack(h.app, 'u-retried')
      await waitUntil(() => h.sqreen.stats().counters['deliveries_failed.email'] === 1, 'the mail to be dropped', 3000)
      const { counters } = h.sqreen.stats()
      assert.equal(counters['deliveries_retried.email'], 2)
      assert.equal(stalled.connections.length, 3, 'three tries, three connections')
      assert.match(h.logger.lines.find((l) => l.includes('delivery_failed.email')) ?? '', /after 3 attempt\(s\)/)
    } finally {
      await h.sqreen.close()
      await stalled.close()
    }
  })
})
