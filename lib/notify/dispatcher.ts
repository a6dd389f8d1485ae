import type { Diagnostics } from '../diagnostics.js'
import type { Logger } from '../options.js'
import type { RiskAlert } from '../risk/alert.js'
import { type EmailOptions, emailChannel } from './email.js'
import { alertText } from './format.js'
import { type FetchLike, nodeFetch } from './http.js'
import { type Channel, DeliveryQueue } from './queue.js'
import { slackChannel } from './slack.js'
import { webhookChannel } from './webhook.js'

export interface DeliverySettings {
  /** Per-attempt timeout for HTTP deliveries, ms. */
  readonly timeoutMs: number
  readonly retries: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly maxQueued: number
}

export interface DispatcherConfig {
  readonly slack: { readonly webhookUrl: string } | undefined
  readonly email: EmailOptions | undefined
  readonly webhook: { readonly url: string; readonly secret: string | Buffer } | undefined
  readonly onAlert: ((alert: RiskAlert) => unknown) | undefined
  readonly fetch: FetchLike | undefined
  readonly delivery: DeliverySettings
  readonly logger: Logger
  readonly clock: () => number
}

export interface Dispatcher {
  /** Hands an alert to every channel; returns at once (delivery happens in the background). */
  dispatch(alert: RiskAlert): void
  drain(): Promise<void>
  close(timeoutMs: number): Promise<void>
  readonly channels: readonly string[]
}

/**
 * Fans each alert out to the configured channels through one bounded queue.
 * With no channel configured, alerts are written to the logger, so a fresh
 * install still says something when an account is under attack.
 */
export const createDispatcher = (config: DispatcherConfig, diag: Diagnostics): Dispatcher => {
  const { delivery } = config
  const fetchFn = config.fetch ? async () => config.fetch as FetchLike : nodeFetch
  const channels: Channel[] = []
  if (config.slack) channels.push(slackChannel(config.slack.webhookUrl, fetchFn, delivery.timeoutMs))
  if (config.email) {
    channels.push(
      emailChannel(
        config.email,
        delivery.timeoutMs,
        (delivered) => diag.count(delivered ? 'deliveries_late.email' : 'deliveries_late_failed.email'),
        (recipients) => {
          diag.count('email_recipients_refused', recipients)
          diag.warn(
            'email_recipients_refused',
            `the SMTP server refused ${recipients} recipient(s) of an alert e-mail and took it for the others; check email.to`,
          )
        },
      ),
    )
  }
  if (config.webhook) {
    channels.push(webhookChannel(config.webhook.url, config.webhook.secret, fetchFn, delivery.timeoutMs, config.clock))
  }
  const queue = new DeliveryQueue(
    {
      maxQueued: delivery.maxQueued,
      retries: delivery.retries,
      baseDelayMs: delivery.baseDelayMs,
      maxDelayMs: delivery.maxDelayMs,
      concurrency: 4,
    },
    diag,
  )
  const logAlerts = channels.length === 0 && config.onAlert === undefined

  return {
    channels: [...channels.map((c) => c.name), ...(config.onAlert ? ['onAlert'] : []), ...(logAlerts ? ['log'] : [])],
    dispatch(alert) {
      if (config.onAlert) {
        try {
          const result = config.onAlert(alert)
          if (
            result !== null &&
            typeof result === 'object' &&
            typeof (result as Promise<unknown>).then === 'function'
          ) {
            ;(result as Promise<unknown>).then(undefined, (err: unknown) =>
              diag.error('on_alert_rejected', 'the onAlert callback returned a rejected promise', err),
            )
          }
        } catch (err) {
          diag.error('on_alert_threw', 'the onAlert callback threw', err)
        }
      }
      if (logAlerts) {
        try {
          config.logger.warn(`[sqreen-auth] ${alertText(alert)}`)
        } catch {
          // A broken logger must not stop the other channels.
        }
      }
      for (const channel of channels) queue.enqueue(channel, alert)
    },
    drain: () => queue.drain(),
    async close(timeoutMs) {
      await queue.close(timeoutMs)
      for (const channel of channels) {
        try {
          await channel.close?.()
        } catch (err) {
          diag.error('channel_close_failed', `the ${channel.name} channel failed to close`, err)
        }
      }
    },
  }
}
