import type { Diagnostics } from '../diagnostics.js'
import type { RiskAlert } from '../risk/alert.js'
import type { SendResult } from './http.js'

/** One way of telling the team: Slack, e-mail, webhook, the `onAlert` callback. */
export interface Channel {
  readonly name: string
  send(alert: RiskAlert, attempt: number): Promise<SendResult>
  close?(): Promise<void> | void
}

export interface QueueOptions {
  /** Deliveries waiting at once; past it new ones are dropped and counted. */
  readonly maxQueued: number
  /** Tries after the first. */
  readonly retries: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  /** Deliveries running at once. */
  readonly concurrency: number
}

interface Job {
  readonly channel: Channel
  readonly alert: RiskAlert
  attempt: number
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export const backoff = (attempt: number, base: number, max: number, random = Math.random): number => {
  const ceiling = Math.min(max, base * 2 ** attempt)
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

/**
 * Delivers alerts off the request path. Bounded (a flood of alerts or a dead
 * receiver cannot grow memory), retried with backoff and jitter, honouring
 * `Retry-After`; a channel that answers "gone" is disabled loudly. Nothing here
 * ever throws into the caller.
 */
export class DeliveryQueue {
  readonly #options: QueueOptions
  readonly #diag: Diagnostics
  readonly #ready: Job[] = []
  readonly #waiting = new Set<NodeJS.Timeout>()
  readonly #disabled = new Set<string>()
  #running = 0
  #idle: (() => void)[] = []
  #closed = false

  constructor(options: QueueOptions, diag: Diagnostics) {
    this.#options = options
    this.#diag = diag
  }

  get size(): number {
    return this.#ready.length + this.#waiting.size + this.#running
  }

  isDisabled(channel: string): boolean {
    return this.#disabled.has(channel)
  }

  enqueue(channel: Channel, alert: RiskAlert): void {
    if (this.#closed || this.#disabled.has(channel.name)) return
    if (this.size >= this.#options.maxQueued) {
      this.#diag.count('deliveries_dropped')
      this.#diag.warn(
        'delivery_queue_full',
        `more than ${this.#options.maxQueued} alert deliveries are waiting; new ones are dropped.`,
      )
      return
    }
    this.#ready.push({ channel, alert, attempt: 0 })
    this.#pump()
  }

  /** Resolves when nothing is queued, running or waiting for a retry. */
  drain(): Promise<void> {
    return this.size === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve))
  }

  /** Stops retries that have not started; waits for running deliveries up to `timeoutMs`. */
  async close(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.drain(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))])
    clearTimeout(timer)
    this.#closed = true
    for (const t of this.#waiting) clearTimeout(t)
    if (this.#waiting.size > 0) this.#diag.count('deliveries_abandoned', this.#waiting.size)
    this.#waiting.clear()
    this.#ready.length = 0
    this.#settle()
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency && this.#ready.length > 0) {
      const job = this.#ready.shift() as Job
      this.#running++
      void this.#run(job).finally(() => {
        this.#running--
        this.#pump()
        this.#settle()
      })
    }
  }

  #settle(): void {
    if (this.size === 0 && this.#idle.length > 0) {
      const waiting = this.#idle
      this.#idle = []
      for (const resolve of waiting) resolve()
    }
  }

  async #run(job: Job): Promise<void> {
    const { channel } = job
    if (this.#disabled.has(channel.name)) return
    let result: SendResult
    try {
      result = await channel.send(job.alert, job.attempt)
    } catch (err) {
      const reason = err instanceof Error ? err.name : 'error'
      result = { ok: false, retry: true, reason }
    }
    if (result.ok) {
      this.#diag.count(`deliveries.${channel.name}`)
      return
    }
    if (result.disable) {
      this.#disabled.add(channel.name)
      this.#diag.count(`deliveries_failed.${channel.name}`)
      this.#diag.error(
        `channel_disabled.${channel.name}`,
        `the ${channel.name} receiver answered ${result.reason}: ${channel.name} alerts are DISABLED until restart; check its URL or credentials`,
      )
      return
    }
    if (result.retry && job.attempt < this.#options.retries && !this.#closed) {
      const delay = result.retryAfterMs ?? backoff(job.attempt, this.#options.baseDelayMs, this.#options.maxDelayMs)
      job.attempt++
      this.#diag.count(`deliveries_retried.${channel.name}`)
      const timer = setTimeout(() => {
        this.#waiting.delete(timer)
        this.#ready.push(job)
        this.#pump()
      }, delay)
      timer.unref()
      this.#waiting.add(timer)
      return
    }
    this.#diag.count(`deliveries_failed.${channel.name}`)
    this.#diag.error(
      `delivery_failed.${channel.name}`,
      `an alert could not be delivered to ${channel.name} (${result.reason}) after ${job.attempt + 1} attempt(s); it was dropped`,
    )
  }
}
