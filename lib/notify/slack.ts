import type { RiskAlert } from '../risk/alert.js'
import { alertTitle, alertUser, detectionLines } from './format.js'
import { type FetchLike, postJson, retryAfterMs, type SendResult } from './http.js'
import type { Channel } from './queue.js'

/** Slack's mrkdwn treats &, < and > as control characters. */
const escapeMrkdwn = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** The message: a text fallback (notifications, old clients) plus Block Kit blocks. No external links. */
export const slackMessage = (alert: RiskAlert): { text: string; blocks: unknown[] } => ({
  text: escapeMrkdwn(`${alertTitle(alert)}: ${alertUser(alert)}`),
  blocks: [
    { type: 'header', text: { type: 'plain_text', text: alertTitle(alert).slice(0, 150), emoji: false } },
    {
      type: 'section',
      fields: [
        { type: 'mrkdwn', text: `*User*\n\`${escapeMrkdwn(alertUser(alert))}\`` },
        { type: 'mrkdwn', text: `*Rise*\n+${alert.rise} (threshold &gt; ${alert.level})` },
        { type: 'mrkdwn', text: `*Standing score*\n${alert.score}` },
        { type: 'mrkdwn', text: `*Last IP*\n${escapeMrkdwn(alert.ip ?? 'unknown')}` },
      ],
    },
    {
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `*Detections*\n${detectionLines(alert)
          .map((l) => `• ${escapeMrkdwn(l)}`)
          .join('\n')}`.slice(0, 3000),
      },
    },
    {
      type: 'context',
      elements: [{ type: 'mrkdwn', text: escapeMrkdwn(`sqreen-auth alert ${alert.id} · ${alert.at}`) }],
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
