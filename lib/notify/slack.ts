import type { RiskAlert } from '../risk/alert.js'
import { alertTitle, alertUser, detectionLines } from './format.js'
import { type FetchLike, postJson, retryAfterMs, type SendResult } from './http.js'
import type { Channel } from './queue.js'

/** Slack's mrkdwn treats &, < and > as control characters. */
const escapeMrkdwn = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * Text from a user inside a code span: escaped, and its backticks made look-alikes
 * (U+02CB), so a login cannot close the span and format the rest of the message (bold
 * text, a line outside the code that reads like ours). Links and mentions are already
 * inert: `&`, `<`, `>` are escaped, and the text objects it goes into are `verbatim`.
 */
const codeSpan = (text: string): string => `\`${escapeMrkdwn(text).replace(/`/g, '\u02cb')}\``

/**
 * A mrkdwn text object that Slack does not preprocess (`verbatim`): no URL in it becomes a
 * link and no channel name or mention is parsed. Our formatting (bold, line breaks) stays.
 */
const verbatim = (text: string): { type: 'mrkdwn'; text: string; verbatim: true } => ({
  type: 'mrkdwn',
  text,
  verbatim: true,
})

/** The message: a text fallback (notifications, old clients) plus Block Kit blocks. No external links. */
export const slackMessage = (alert: RiskAlert): { text: string; blocks: unknown[] } => ({
  // The notification fallback. Slack parses it as mrkdwn with no way to turn link parsing
  // off, so the user is a code span here too.
  text: `${escapeMrkdwn(alertTitle(alert))}: ${codeSpan(alertUser(alert))}`,
  blocks: [
    { type: 'header', text: { type: 'plain_text', text: alertTitle(alert).slice(0, 150), emoji: false } },
    {
      type: 'section',
      // Each field at most 2,000 characters (Block Kit), which a user key cut to USER_SHOWN
      // characters keeps to even when every one of them is escaped (`&amp;`).
      fields: [
        verbatim(`*User*\n${codeSpan(alertUser(alert))}`),
        verbatim(`*Rise*\n+${alert.rise} (threshold &gt; ${alert.level})`),
        verbatim(`*Standing score*\n${alert.score}`),
        verbatim(`*Last IP*\n${escapeMrkdwn(alert.ip ?? 'unknown')}`),
      ],
    },
    {
      type: 'section',
      text: verbatim(
        `*Detections*\n${detectionLines(alert)
          .map((l) => `• ${escapeMrkdwn(l)}`)
          .join('\n')}`.slice(0, 3000),
      ),
    },
    {
      type: 'context',
      elements: [verbatim(escapeMrkdwn(`sqreen-auth alert ${alert.id} · ${alert.at}`))],
    },
  ],
})

/**
 * Slack incoming webhooks: 200 "ok" delivers; 429 carries Retry-After; 400 means
 * the payload is wrong (retrying cannot help, so drop); 403/404/410 mean the
 * webhook was revoked or the channel is gone: disable the channel loudly.
 */
export const slackChannel = (url: string, fetchFn: () => Promise<FetchLike>, timeoutMs: number): Channel => ({
  name: 'slack',
  async send(alert): Promise<SendResult> {
    const { status, retryAfter } = await postJson(
      await fetchFn(),
      url,
      JSON.stringify(slackMessage(alert)),
      {},
      timeoutMs,
    )
    if (status === 200) return { ok: true }
    if (status === 429) {
      const after = retryAfterMs(retryAfter)
      return after === undefined
        ? { ok: false, retry: true, reason: 'HTTP 429' }
        : { ok: false, retry: true, retryAfterMs: after, reason: 'HTTP 429' }
    }
    if (status === 400) return { ok: false, retry: false, reason: 'HTTP 400 (Slack refused the payload)' }
    if (status === 403 || status === 404 || status === 410) {
      return { ok: false, retry: false, disable: true, reason: `HTTP ${status} (webhook revoked or channel gone)` }
    }
    if (status >= 500) return { ok: false, retry: true, reason: `HTTP ${status}` }
    return { ok: false, retry: false, reason: `HTTP ${status}` }
  },
})
