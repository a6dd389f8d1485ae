/**
 * Real local receivers for alert deliveries: an HTTP server that answers like a
 * Slack incoming webhook (answers scripted per request), a webhook receiver that
 * checks every request with `verifyWebhook`, and an SMTP server (`smtp-server`)
 * that keeps the mails it accepts. They listen on 127.0.0.1 and are driven by the
 * package exactly as production receivers would be: over TCP, through node-fetch
 * and nodemailer. Also: a small login app that raises alerts, and `waitUntil`.
 */
import { once } from 'node:events'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net'
import type { Express, NextFunction, Request, Response } from 'express'
import express5 from 'express'
import { Strategy as LocalStrategy } from 'passport-local'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server'
import request from 'supertest'
import { type Options, type RiskAlert, verifyWebhook } from '../../lib/index.js'
import { type Harness, harness, type Variant } from './apps.js'

/** Resolves when `condition()` holds; rejects after `ms` with `what` in the message. Polls every 5 ms. */
export const waitUntil = async (condition: () => boolean, what: string, ms = 3000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

const listenOn = async (server: Server | TcpServer, port = 0): Promise<number> => {
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

// ---------------------------------------------------------------------------------------------
// Scripted HTTP receivers (Slack-like and webhook)

/**
 * How the receiver answers one request: a status (body "ok" for 2xx), a full
 * answer (optionally after `delayMs`), or `'hang'` (never answer; the client has to time out).
 */
export type Answer =
  | number
  | 'hang'
  | { status: number; headers?: Record<string, string>; body?: string; delayMs?: number }

export interface ReceivedRequest {
  /** `Date.now()` when the body was complete. */
  readonly at: number
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly answer: Answer
  /** When a hung request's connection was closed by the client (its timeout); `undefined` otherwise. */
  abortedAt?: number
}

/** Shared machinery: a listening server with a port kept across down()/up(), scripted answers, a record. */
abstract class ScriptedReceiver {
  readonly requests: ReceivedRequest[] = []
  readonly #script: Answer[] = []
  readonly #hung = new Set<ServerResponse>()
  #server: Server | undefined
  #port = 0

  get port(): number {
    return this.#port
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/hook`
  }

  /** Answers for the next requests, in order; once used up, requests get 200 "ok". */
  script(...answers: Answer[]): this {
    this.#script.push(...answers)
    return this
  }

  protected abstract handler(): (req: IncomingMessage, res: ServerResponse) => void

  /** Takes the next scripted answer and records the request. */
  protected record(req: IncomingMessage, body: string): ReceivedRequest {
    const entry: ReceivedRequest = {
      at: Date.now(),
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body,
      answer: this.#script.shift() ?? 200,
    }
    this.requests.push(entry)
    return entry
  }

  protected answer(entry: ReceivedRequest, res: ServerResponse): void {
    const { answer } = entry
    if (answer === 'hang') {
      this.#hung.add(res)
      res.on('close', () => {
        this.#hung.delete(res)
        if (!res.writableEnded) entry.abortedAt = Date.now()
      })
      return
    }
    const { status, headers = {}, body, delayMs = 0 } = typeof answer === 'number' ? { status: answer } : answer
    const send = (): void => {
      if (res.destroyed) return
      res.writeHead(status, { 'content-type': 'text/plain', ...headers })
      res.end(body ?? (status >= 200 && status < 300 ? 'ok' : `status ${status}`))
    }
    if (delayMs > 0) setTimeout(send, delayMs)
    else send()
  }

  async start(): Promise<this> {
    this.#server = createServer(this.handler())
    this.#port = await listenOn(this.#server, this.#port)
    return this
  }

  /** Resolves once `n` requests arrived. */
  waitFor(n: number, ms = 3000): Promise<void> {
    return waitUntil(() => this.requests.length >= n, `${n} request(s) at ${this.url}`, ms)
  }

  /** Stops listening (connections are refused) but keeps the port for `up()`. */
  async down(): Promise<void> {
    const server = this.#server
    if (!server) return
    this.#server = undefined
    for (const res of this.#hung) res.destroy()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Listens again on the same port. */
  up(): Promise<this> {
    return this.start()
  }

  close(): Promise<void> {
    return this.down()
  }
}

/** Answers like a Slack incoming webhook: 200 "ok" unless scripted otherwise. */
export class SlackReceiver extends ScriptedReceiver {
  static start(): Promise<SlackReceiver> {
    return new SlackReceiver().start()
  }

  /** The JSON payloads received, in order. */
  get payloads(): SlackPayload[] {
    return this.requests.map((r) => JSON.parse(r.body) as SlackPayload)
  }

  protected handler() {
    return (req: IncomingMessage, res: ServerResponse): void => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => this.answer(this.record(req, Buffer.concat(chunks).toString('utf8')), res))
    }
  }
}

export interface SlackPayload {
  text: string
  blocks: {
    type: string
    text?: { type: string; text: string }
    fields?: { type: string; text: string }[]
    elements?: { type: string; text: string }[]
  }[]
}

export interface WebhookDelivery {
  readonly request: ReceivedRequest
  /** What `verifyWebhook` returned; `undefined` when it threw. */
  readonly alert: RiskAlert | undefined
  readonly error: unknown
}

/**
 * A receiver as the README tells users to write it: `express.raw()` so the exact
 * bytes are verified, then `verifyWebhook(req.headers, req.body, secret)`.
 */
export class WebhookReceiver extends ScriptedReceiver {
  readonly deliveries: WebhookDelivery[] = []
  readonly #secret: string | Buffer
  readonly #now: (() => number) | undefined

  constructor(secret: string | Buffer, now?: () => number) {
    super()
    this.#secret = secret
    this.#now = now
  }

  static start(secret: string | Buffer, now?: () => number): Promise<WebhookReceiver> {
    return new WebhookReceiver(secret, now).start()
  }

  /** The alerts that passed verification, in order. */
  get verified(): RiskAlert[] {
    return this.deliveries.flatMap((d) => (d.alert ? [d.alert] : []))
  }

  protected handler() {
    const app = express5()
    app.post('/hook', express5.raw({ type: 'application/json' }), (req: Request, res: Response) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
      const entry = this.record(req, raw.toString('utf8'))
      let alert: RiskAlert | undefined
      let error: unknown
      try {
        alert = verifyWebhook(req.headers, raw, this.#secret, this.#now ? { now: this.#now } : {})
      } catch (err) {
        error = err
      }
      this.deliveries.push({ request: entry, alert, error })
      this.answer(entry, res)
    })
    // Anything else (a followed redirect would land here too) is recorded and answered as scripted.
    app.use((req: Request, res: Response) => {
      this.answer(this.record(req, ''), res)
    })
    return app as unknown as (req: IncomingMessage, res: ServerResponse) => void
  }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/** One mail as received, with a minimal MIME reading (no mailparser in the project). */
export interface ReceivedMail {
  readonly from: string
  readonly to: readonly string[]
  /** The whole message as sent over SMTP. */
  readonly raw: string
  readonly subject: string
  /** Decoded text/plain and text/html parts. */
  readonly text: string
  readonly html: string
  readonly contentType: string
}

/** An SMTP rejection: the reply code (4xx temporary, 5xx permanent) and the stage it is given at. */
export interface Rejection {
  readonly code: number
  readonly stage?: 'rcpt' | 'data'
}

const unfold = (head: string): Map<string, string> => {
  const headers = new Map<string, string>()
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return headers
}

const decodeQuotedPrintable = (text: string): string =>
  Buffer.from(
    text
      .replace(/=\r?\n/g, '')
      .replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
    'latin1',
  ).toString('utf8')

const decodeBody = (body: string, encoding: string | undefined): string => {
  const e = (encoding ?? '7bit').toLowerCase()
  if (e === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (e === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=`, `=?UTF-8?B?...?=`). */
const decodeWords = (value: string): string =>
  value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, kind: string, text: string) =>
      kind.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64').toString('utf8')
        : decodeQuotedPrintable(text.replace(/_/g, ' ')),
    )

const splitMessage = (raw: string): { headers: Map<string, string>; body: string } => {
  const match = /\r?\n\r?\n/.exec(raw)
  const end = match ? match.index : raw.length
  return { headers: unfold(raw.slice(0, end)), body: match ? raw.slice(end + match[0].length) : '' }
}

/** Reads subject and the text/html parts of a (possibly multipart) message. */
export const parseMail = (raw: string, from: string, to: readonly string[]): ReceivedMail => {
  const top = splitMessage(raw)
  const contentType = top.headers.get('content-type') ?? 'text/plain'
  const parts: { type: string; content: string }[] = []
  const walk = (headers: Map<string, string>, body: string): void => {
    const type = headers.get('content-type') ?? 'text/plain'
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1]
    if (type.toLowerCase().startsWith('multipart/') && boundary) {
      for (const chunk of body.split(`--${boundary}`).slice(1)) {
        if (chunk.startsWith('--')) break
        const part = splitMessage(chunk.replace(/^\r?\n/, ''))
        walk(part.headers, part.body)
      }
      return
    }
    parts.push({
      type: type.split(';')[0]?.trim().toLowerCase() ?? '',
      content: decodeBody(body, headers.get('content-transfer-encoding')),
    })
  }
  walk(top.headers, top.body)
  const part = (type: string): string =>
    parts
      .filter((p) => p.type === type)
      .map((p) => p.content)
      .join('\n')
  return {
    from,
    to,
    raw,
    subject: decodeWords(top.headers.get('subject') ?? ''),
    text: part('text/plain'),
    html: part('text/html'),
    contentType,
  }
}

/** A real SMTP server (no TLS, no auth) that keeps every mail it accepts and can be told to refuse. */
export class SmtpReceiver {
  readonly mails: ReceivedMail[] = []
  /** Every DATA or RCPT answer given, accepted or not (so attempts can be counted). */
  readonly attempts: { at: number; code: number }[] = []
  readonly #rejections: Rejection[] = []
  #server: SMTPServer | undefined
  #port = 0

  static start(): Promise<SmtpReceiver> {
    return new SmtpReceiver().start()
  }

  get port(): number {
    return this.#port
  }

  /** nodemailer transport options for this server. */
  get transport(): { host: string; port: number; secure: false; ignoreTLS: true } {
    return { host: '127.0.0.1', port: this.#port, secure: false, ignoreTLS: true }
  }

  /** Refuse the next deliveries, in order, with these reply codes. */
  reject(...rejections: Rejection[]): this {
    this.#rejections.push(...rejections)
    return this
  }

  #refusal(stage: 'rcpt' | 'data'): Error | undefined {
    const next = this.#rejections[0]
    if (next === undefined || (next.stage ?? 'data') !== stage) return undefined
    this.#rejections.shift()
    this.attempts.push({ at: Date.now(), code: next.code })
    return Object.assign(new Error(next.code < 500 ? 'Temporary failure, try again later' : 'Mailbox unavailable'), {
      responseCode: next.code,
    })
  }

  async start(): Promise<this> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      closeTimeout: 100,
      onRcptTo: (_address, _session, callback) => {
        const refusal = this.#refusal('rcpt')
        if (refusal) callback(refusal)
        else callback()
      },
      onData: (stream: SMTPServerDataStream, session: SMTPServerSession, callback) => {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        stream.on('end', () => {
          const refusal = this.#refusal('data')
          if (refusal) {
            callback(refusal)
            return
          }
          const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
          const to = session.envelope.rcptTo.map((r) => r.address)
          this.attempts.push({ at: Date.now(), code: 250 })
          this.mails.push(parseMail(Buffer.concat(chunks).toString('utf8'), from, to))
          callback()
        })
      },
    })
    server.on('error', () => {
      // A client hanging up mid-session is not the test's concern.
    })
    this.#server = server
    // smtp-server's listen() wraps net.Server#listen; the underlying server emits 'listening'.
    const net = (server as unknown as { server: TcpServer }).server
    server.listen(this.#port, '127.0.0.1')
    await once(net, 'listening')
    const address = net.address()
    if (address === null || typeof address === 'string') throw new Error('no TCP address')
    this.#port = address.port
    return this
  }

  waitFor(n: number, ms = 3000): Promise<void> {
    return waitUntil(() => this.mails.length >= n, `${n} mail(s) on port ${this.#port}`, ms)
  }

  /** Stops listening: connections are refused from now on. */
  async down(): Promise<void> {
    const server = this.#server
    if (!server) return
    this.#server = undefined
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  close(): Promise<void> {
    return this.down()
  }
}

/** A TCP server that accepts connections and never says anything (an SMTP server that never greets). */
export class SilentServer {
  readonly sockets = new Set<Socket>()
  #server: TcpServer | undefined
  #port = 0
  connections = 0

  static async start(): Promise<SilentServer> {
    const s = new SilentServer()
    s.#server = createTcpServer((socket) => {
      s.connections++
      s.sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => s.sockets.delete(socket))
    })
    s.#port = await listenOn(s.#server)
    return s
  }

  get port(): number {
    return this.#port
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    const server = this.#server
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

// ---------------------------------------------------------------------------------------------
// A login app that raises alerts

export interface User {
  readonly id: number
  readonly email: string
  readonly username: string
  readonly password: string
}

/** Personal data distinctive enough that finding it anywhere can only mean a leak. */
export const USERS: readonly User[] = [
  { id: 1, email: 'Jane.Doe.Private@example.org', username: 'jdoe-private', password: 'pw-Jane-1!' },
  { id: 2, email: 'bob.builder.private@example.net', username: 'bbuilder-private', password: 'pw-Bob-2!' },
  { id: 3, email: 'carol.singer.private@example.com', username: 'csinger-private', password: 'pw-Carol-3!' },
]

export const userByLogin = (login: string): User | undefined =>
  USERS.find((u) => u.username === login.toLowerCase() || u.email.toLowerCase() === login.toLowerCase())

export const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36'

/**
 * A real Express app (through the shared harness) with passport-local on
 * `POST /login` and `POST /attack`, which reports a critical attack for
 * `{ id }` with `trackEvent` (+20 points: one alert at once). `trust proxy` is on
 * so tests can give each client its own IP with X-Forwarded-For.
 */
export const alertApp = (variant: Variant, options: Partial<Options> = {}): Harness =>
  harness(
    variant,
    ({ app, passport, sqreen }) => {
      app.set('trust proxy', true)
      passport.use(
        new LocalStrategy((login, password, done) => {
          const user = userByLogin(login)
          if (user && user.password === password) done(null, user)
          else done(null, false, { message: 'Incorrect username or password.' })
        }),
      )
      app.post('/login', passport.authenticate('local', { session: false }), (req: Request, res: Response) => {
        res.json({ id: (req.user as User).id })
      })
      app.post('/attack', (req: Request, res: Response) => {
        const id = String((req.body as { id?: unknown }).id ?? 'nobody')
        sqreen.trackEvent(req, 'sql_injection', { severity: 'critical', identity: { id } })
        res.status(204).end()
      })
      app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
        res.status(500).json({ error: err.name })
      })
    },
    options,
  )

/** A running HTTP server for an app, so latencies measure requests, not server start-up. */
export const serve = async (app: Express): Promise<{ url: string; close(): Promise<void> }> => {
  const server = createServer(app as unknown as (req: IncomingMessage, res: ServerResponse) => void)
  const port = await listenOn(server)
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export interface LoginOptions {
  readonly ip?: string
  readonly userAgent?: string
}

/** One login over HTTP; resolves with the status and the time it took. */
export const login = async (
  target: Express | string,
  name: string,
  password: string,
  options: LoginOptions = {},
): Promise<{ status: number; ms: number }> => {
  const started = performance.now()
  let req = request(target)
    .post('/login')
    .set('User-Agent', options.userAgent ?? USER_AGENT)
  if (options.ip) req = req.set('X-Forwarded-For', options.ip)
  const res = await req.send({ username: name, password })
  return { status: res.status, ms: performance.now() - started }
}

/** `n` failed logins for `name`, one after the other (a brute force is sequential). */
export const failLogins = async (
  target: Express | string,
  name: string,
  n: number,
  options: LoginOptions = {},
): Promise<void> => {
  for (let i = 0; i < n; i++) {
    const { status } = await login(target, name, `wrong-${i}`, options)
    if (status !== 401) throw new Error(`a wrong password answered ${status}, expected 401`)
  }
}

/** Reports a critical attack on `{ id }` (one alert for that user). */
export const attack = async (target: Express | string, id: string, ip?: string): Promise<void> => {
  let req = request(target).post('/attack')
  if (ip) req = req.set('X-Forwarded-For', ip)
  const res = await req.send({ id })
  if (res.status !== 204) throw new Error(`/attack answered ${res.status}`)
}
