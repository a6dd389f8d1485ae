import nodemailer from 'nodemailer'
import type { RiskAlert } from '../risk/alert.js'
import { alertText, alertTitle, alertUser, detectionLines, subjectUser } from './format.js'
import type { SendResult } from './http.js'
import type { Channel } from './queue.js'

/** Nodemailer's transport options, a transport object, or an SMTP URL (`smtp://user:pass@host:587`). */
export type EmailTransport =
  | string
  | Record<string, unknown>
  | { sendMail(message: Record<string, unknown>): Promise<unknown> }

export interface EmailOptions {
  /** An SMTP URL, nodemailer SMTP options, or a ready nodemailer transport. */
  transport: EmailTransport
  from: string
  to: string | readonly string[]
  /** Defaults to `'[sqreen-auth]'`. */
  subjectPrefix?: string
}

/**
 * Nodemailer waits up to 2 minutes to connect and 10 minutes on an idle
 * socket by default; an alert that cannot be handed over within seconds
 * should be retried later instead of holding a connection.
 */
export const EMAIL_TIMEOUTS = {
  connectionTimeout: 5_000,
  greetingTimeout: 5_000,
  socketTimeout: 10_000,
  dnsTimeout: 5_000,
}

const escapeHtml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')

export const emailMessage = (alert: RiskAlert, options: EmailOptions): Record<string, unknown> => {
  const title = alertTitle(alert)
  return {
    from: options.from,
    to: typeof options.to === 'string' ? options.to : [...options.to],
    // The user key only: in advanced mode it is an id or a pseudonym, never an e-mail or name.
    subject: `${options.subjectPrefix ?? '[sqreen-auth]'} ${title}: ${subjectUser(alert)}`,
    text: alertText(alert),
    html: [
      `<h1 style="font-size:18px">${escapeHtml(title)}</h1>`,
      '<table cellpadding="4">',
      `<tr><th align="left">User</th><td><code>${escapeHtml(alertUser(alert))}</code></td></tr>`,
      `<tr><th align="left">Rise</th><td>+${alert.rise} (threshold: more than ${alert.level})</td></tr>`,
      `<tr><th align="left">Standing score</th><td>${alert.score}</td></tr>`,
      `<tr><th align="left">Last IP</th><td>${escapeHtml(alert.ip ?? 'unknown')}</td></tr>`,
      '</table>',
      '<h2 style="font-size:15px">Detections</h2>',
      `<ul>${detectionLines(alert)
        .map((l) => `<li>${escapeHtml(l)}</li>`)
        .join('')}</ul>`,
      `<p style="color:#666;font-size:12px">sqreen-auth alert ${escapeHtml(alert.id)} at ${escapeHtml(alert.at)}</p>`,
    ].join('\n'),
  }
}

/** Nodemailer codes for a message the server can never accept, when no SMTP reply says otherwise. */
const PERMANENT_CODES = new Set(['EENVELOPE', 'EMESSAGE'])

/** How a nodemailer error should be handled: auth failures disable, 5xx drop, the rest retry. */
export const classifyMailError = (err: unknown): SendResult => {
  const e = err as { code?: unknown; responseCode?: unknown; name?: unknown }
  const code = typeof e?.code === 'string' ? e.code : undefined
  const responseCode = typeof e?.responseCode === 'number' ? e.responseCode : undefined
  const reason = `${code ?? (typeof e?.name === 'string' ? e.name : 'error')}${responseCode ? ` ${responseCode}` : ''}`
  if (code === 'EAUTH') {
    // 454 is a temporary authentication failure (RFC 4954: the server cannot check
    // credentials right now): retried. Only a final answer (535, ...) disables e-mail.
    if (responseCode !== undefined && responseCode < 500)
      return { ok: false, retry: true, reason: `${reason} (SMTP authentication temporarily failed)` }
    return { ok: false, retry: false, disable: true, reason: `${reason} (SMTP authentication failed)` }
  }
  // The SMTP reply decides first: 4xx is temporary (greylisting, a full queue), 5xx is final.
  if (responseCode !== undefined) return { ok: false, retry: responseCode < 500, reason }
  if (code !== undefined && PERMANENT_CODES.has(code)) return { ok: false, retry: false, reason }
  return { ok: false, retry: true, reason }
}

/** What a send that outlived its bound answers (its promise is left to settle on its own). */
const TIMED_OUT = Symbol('timed out')

/**
 * `onLate` hears how a send given up on ended (`true`: the mail went out after all), so
 * it can be counted: an e-mail cannot be recalled, so it is never sent again.
 */
/** The recipients the server refused, from nodemailer's answer to a send that went out. */
const refusedRecipients = (info: unknown): number => {
  const rejected = (info as { rejected?: unknown } | null | undefined)?.rejected
  return Array.isArray(rejected) ? rejected.length : 0
}

export const emailChannel = (
  options: EmailOptions,
  timeoutMs: number,
  onLate: (delivered: boolean) => void = () => {},
  /**
   * Hears how many recipients the server refused when it took the message for the others
   * (nodemailer resolves then): delivered, but not to everyone, which must not go unseen.
   */
  onRefused: (recipients: number) => void = () => {},
): Channel => {
  const { transport } = options
  const mailer =
    typeof transport === 'object' && typeof (transport as { sendMail?: unknown }).sendMail === 'function'
      ? (transport as { sendMail(message: Record<string, unknown>): Promise<unknown>; close?(): void })
      : nodemailer.createTransport(
          typeof transport === 'string'
            ? { url: transport, ...EMAIL_TIMEOUTS }
            : { ...EMAIL_TIMEOUTS, ...(transport as Record<string, unknown>) },
        )
  const ownsTransport = mailer !== transport
  return {
    name: 'email',
    async send(alert): Promise<SendResult> {
      const sent = async (): Promise<unknown> => mailer.sendMail(emailMessage(alert, options))
      // A transport built here is bounded by nodemailer's own socket timeouts (EMAIL_TIMEOUTS).
      // One the application built may never answer, and would hold one of the queue's few
      // workers, shared by every channel: it gets `delivery.timeout`, and a send given up on
      // is not retried, since it may still go out (an SMTP send cannot be taken back).
      if (ownsTransport) {
        try {
          const refused = refusedRecipients(await sent())
          if (refused > 0) onRefused(refused)
          return { ok: true }
        } catch (err) {
          return classifyMailError(err)
        }
      }
      let timer: NodeJS.Timeout | undefined
      try {
        const sending = sent()
        const late = new Promise<typeof TIMED_OUT>((resolve) => {
          timer = setTimeout(resolve, timeoutMs, TIMED_OUT)
          timer.unref()
        })
        const answer = await Promise.race([sending, late])
        if (answer === TIMED_OUT) {
          sending.then(
            () => onLate(true),
            () => onLate(false),
          )
          return { ok: false, retry: false, reason: `no answer within ${timeoutMs} ms (outcome unknown, not retried)` }
        }
        const refused = refusedRecipients(answer)
        if (refused > 0) onRefused(refused)
        return { ok: true }
      } catch (err) {
        return classifyMailError(err)
      } finally {
        clearTimeout(timer)
      }
    },
    close() {
      if (ownsTransport) (mailer as { close?(): void }).close?.()
    },
  }
}
