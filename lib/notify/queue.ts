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
  /** Longest pause of a channel for one `Retry-After`. Defaults to `MAX_CHANNEL_PAUSE_MS`. */
  readonly maxPauseMs?: number
}

/** A `Retry-After` pauses its channel for at most this long (10 min), however far it points. */
export const MAX_CHANNEL_PAUSE_MS = 10 * 60_000

interface Job {
  readonly channel: Channel
  readonly alert: RiskAlert
  /** Enqueue order: a job put back after a `Retry-After` goes before its channel's later jobs. */
  readonly seq: number
  attempt: number
  /** Set while a run of the job has put it back (a retry): it is still held. */
  requeued: boolean
  /** About an account (see `isAccountAlert`): sent before, and dropped after, alerts about typed logins. */
  readonly account: boolean
}

/**
 * Whether an alert is about an account rather than about a login typed that no account was
 * linked to (`login:` keys: anyone can make those alert, by failing a few logins on made-up
 * names). In an alert flood on made-up logins (a stuffing run raises one alert per login),
 * the queue would otherwise send, or drop, the one alert about a real account in the order
 * it came: behind a thousand, at a receiver's pace of one a second, or not at all.
 */
export const isAccountAlert = (alert: RiskAlert): boolean => !alert.userKey.startsWith('login:')

interface Pause {
  readonly until: number
  readonly timer: NodeJS.Timeout
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export const backoff = (attempt: number, base: number, max: number, random = Math.random): number => {
  const ceiling = Math.min(max, base * 2 ** attempt)
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

const duration = (ms: number): string =>
  ms >= 60_000 ? `${+(ms / 60_000).toFixed(1)} min` : `${+(ms / 1000).toFixed(1)} s`

/**
 * Delivers alerts off the request path. Bounded (a flood of alerts or a dead
 * receiver cannot grow memory), retried with backoff and jitter, honouring
 * `Retry-After` for the whole channel; a channel that answers "gone" is disabled
 * loudly. Nothing here ever throws into the caller.
 */
export class DeliveryQueue {
  readonly #options: QueueOptions
  readonly #maxPauseMs: number
  readonly #diag: Diagnostics
  readonly #ready: Job[] = []
  /** Backoff timers of jobs waiting for a retry, and those jobs (counted if close() stops them). */
  readonly #waiting = new Map<NodeJS.Timeout, Job>()
  readonly #disabled = new Set<string>()
  /** Channels told to wait by their receiver (`Retry-After`): their jobs stay queued, in order. */
  readonly #paused = new Map<string, Pause>()
  #seq = 0
  #running = 0
  /**
   * Deliveries held per channel (queued, waiting for a retry or running). A channel may
   * hold at most its share of `maxQueued`: a receiver that is down or paused for minutes
   * keeps its alerts queued, and would otherwise fill the queue and have every other
   * channel's new alerts dropped. An alert goes to every channel, so while all of them
   * work each holds about the same number and the shares change nothing.
   */
  readonly #held = new Map<string, number>()
  #idle: (() => void)[] = []
  #closed = false

  constructor(options: QueueOptions, diag: Diagnostics) {
    this.#options = options
    this.#maxPauseMs = options.maxPauseMs ?? MAX_CHANNEL_PAUSE_MS
    this.#diag = diag
  }

  get size(): number {
    return this.#ready.length + this.#waiting.size + this.#running
  }

  isDisabled(channel: string): boolean {
    return this.#disabled.has(channel)
  }

  /** Whether a receiver's `Retry-After` is holding this channel's deliveries back. */
  isPaused(channel: string): boolean {
    return this.#paused.has(channel)
  }

  enqueue(channel: Channel, alert: RiskAlert): void {
    if (this.#closed) return
    if (this.#disabled.has(channel.name)) {
      // Not silently: the channel's revoked receiver was logged once, each alert it misses is counted.
      this.#diag.count(`deliveries_disabled.${channel.name}`)
      return
    }
    const account = isAccountAlert(alert)
    const name = channel.name
    if (!this.#held.has(name)) this.#held.set(name, 0)
    const share = Math.ceil(this.#options.maxQueued / this.#held.size)
    const channelFull = (this.#held.get(name) ?? 0) >= share
    const queueFull = this.size >= this.#options.maxQueued
    if (channelFull || queueFull) {
      // An alert about an account takes the place of the newest queued one about a typed
      // login: of its own channel when the channel is at its share (that frees both), else
      // of any channel. Chosen before anything is dropped, so that nothing is dropped for an
      // alert that is not taken after all.
      const victim = account ? this.#loginAlertToDrop(channelFull ? name : undefined) : -1
      if (victim < 0) {
        this.#diag.count('deliveries_dropped')
        if (queueFull) {
          this.#diag.warn(
            'delivery_queue_full',
            `more than ${this.#options.maxQueued} alert deliveries are waiting; new ones are dropped.`,
          )
        } else {
          this.#diag.warn(
            `delivery_channel_full.${name}`,
            `${this.#held.get(name)} ${name} alert deliveries are waiting, its share of the queue; new ${name} alerts are dropped, the other channels carry on.`,
          )
        }
        return
      }
      const [dropped] = this.#ready.splice(victim, 1) as [Job]
      this.#release(dropped)
      this.#diag.count('deliveries_dropped')
      this.#diag.warn(
        'delivery_login_alert_dropped',
        'the alert queue is full: queued alerts about typed logins (no account linked) are dropped to make room for alerts about accounts.',
      )
    }
    this.#held.set(channel.name, (this.#held.get(channel.name) ?? 0) + 1)
    this.#ready.push({ channel, alert, seq: this.#seq++, attempt: 0, requeued: false, account })
    this.#pump()
  }

  /**
   * The index in the ready queue of the newest queued delivery of an alert about a typed
   * login (of `channel`, or of any channel), to drop for an alert about an account; -1 when
   * there is none (only deliveries queued, not running or waiting for a retry, are dropped).
   */
  #loginAlertToDrop(channel: string | undefined): number {
    for (let i = this.#ready.length - 1; i >= 0; i--) {
      const job = this.#ready[i] as Job
      if (!job.account && (channel === undefined || job.channel.name === channel)) return i
    }
    return -1
  }

  /** Resolves when nothing is queued, running or waiting for a retry. */
  drain(): Promise<void> {
    return this.size === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve))
  }

  /**
   * Waits up to `timeoutMs` for everything queued, running or waiting for a retry;
   * then drops what has not started (queued, paused or waiting for a retry), counted
   * as `deliveries_abandoned` and logged once. Deliveries already running finish
   * (each within its own timeout) and are counted as usual, but are not retried.
   */
  async close(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.drain(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))])
    clearTimeout(timer)
    this.#closed = true
    for (const pause of this.#paused.values()) clearTimeout(pause.timer)
    this.#paused.clear()
    for (const t of this.#waiting.keys()) clearTimeout(t)
    const abandoned = [...this.#ready, ...this.#waiting.values()]
    this.#waiting.clear()
    this.#ready.length = 0
    for (const job of abandoned) this.#release(job)
    if (abandoned.length > 0) {
      this.#diag.count('deliveries_abandoned', abandoned.length)
      const perChannel = new Map<string, number>()
      for (const job of abandoned) perChannel.set(job.channel.name, (perChannel.get(job.channel.name) ?? 0) + 1)
      const channels = [...perChannel].map(([name, n]) => `${name}: ${n}`).join(', ')
      this.#diag.error(
        'delivery_abandoned',
        `${abandoned.length} alert ${abandoned.length === 1 ? 'delivery was' : 'deliveries were'} still queued or waiting for a retry when close() stopped waiting after ${timeoutMs} ms (${channels}); dropped`,
      )
    }
    this.#settle()
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency) {
      // The first job about an account whose channel is not paused, else the first job whose
      // channel is not paused: a paused channel holds back its own jobs only.
      const index = this.#next()
      if (index < 0 || index >= this.#ready.length) return
      const job = this.#ready.splice(index, 1)[0] as Job
      this.#running++
      job.requeued = false
      void this.#run(job).finally(() => {
        this.#running--
        if (!job.requeued) this.#release(job)
        this.#pump()
        this.#settle()
      })
    }
  }

  /** The index of the next job to run (see `#pump`), -1 when none may run. */
  #next(): number {
    let first = -1
    for (let i = 0; i < this.#ready.length; i++) {
      const job = this.#ready[i] as Job
      if (this.#paused.size > 0 && this.#paused.has(job.channel.name)) continue
      if (job.account) return i
      if (first < 0) first = i
    }
    return first
  }

  #settle(): void {
    if (this.size === 0 && this.#idle.length > 0) {
      const waiting = this.#idle
      this.#idle = []
      for (const resolve of waiting) resolve()
    }
  }

  /** A job is done with (delivered, failed, dropped): its channel holds one fewer. */
  #release(job: Job): void {
    const name = job.channel.name
    this.#held.set(name, Math.max(0, (this.#held.get(name) ?? 1) - 1))
  }

  /** Puts a job back among the queued ones by enqueue order, so its channel's later alerts stay behind it. */
  #putBack(job: Job): void {
    job.requeued = true
    const index = this.#ready.findIndex((j) => j.seq > job.seq)
    if (index < 0) this.#ready.push(job)
    else this.#ready.splice(index, 0, job)
  }

  /**
   * Holds back every delivery of a channel until `ms` from now (at most `maxPauseMs`).
   * `Retry-After` speaks for the receiver, not for one alert: during an alert storm
   * the other alerts would otherwise be sent into the same limit, each burning its
   * retries. A longer wait given while paused extends the pause.
   */
  #pause(channel: Channel, ms: number, reason: string): void {
    const name = channel.name
    const wait = Math.min(ms, this.#maxPauseMs)
    const until = Date.now() + wait
    const current = this.#paused.get(name)
    if (current !== undefined && current.until >= until) return
    if (current !== undefined) clearTimeout(current.timer)
    else {
      this.#diag.count(`deliveries_paused.${name}`)
      this.#diag.warn(
        `channel_paused.${name}`,
        `the ${name} receiver answered ${reason} with Retry-After: ${name} deliveries are paused for ${duration(wait)} (Retry-After is capped at ${duration(this.#maxPauseMs)}); queued ${name} alerts keep their order, the other channels carry on`,
      )
    }
    const timer = setTimeout(() => {
      this.#paused.delete(name)
      this.#pump()
    }, wait)
    timer.unref()
    this.#paused.set(name, { until, timer })
  }

  async #run(job: Job): Promise<void> {
    const { channel } = job
    if (this.#disabled.has(channel.name)) {
      // Queued before the channel was disabled.
      this.#diag.count(`deliveries_disabled.${channel.name}`)
      return
    }
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
    if (result.retry && !this.#closed && result.retryAfterMs !== undefined) {
      // The receiver said when to come back: the whole channel waits (see #pause), and this
      // job waits in the queue, ahead of the channel's later alerts, rather than on a timer.
      this.#pause(channel, result.retryAfterMs, result.reason)
      if (job.attempt < this.#options.retries) {
        job.attempt++
        this.#diag.count(`deliveries_retried.${channel.name}`)
        this.#putBack(job)
        return
      }
    } else if (result.retry && job.attempt < this.#options.retries && !this.#closed) {
      const delay = backoff(job.attempt, this.#options.baseDelayMs, this.#options.maxDelayMs)
      job.attempt++
      job.requeued = true
      this.#diag.count(`deliveries_retried.${channel.name}`)
      const timer = setTimeout(() => {
        this.#waiting.delete(timer)
        this.#ready.push(job)
        this.#pump()
      }, delay)
      timer.unref()
      this.#waiting.set(timer, job)
      return
    }
    this.#diag.count(`deliveries_failed.${channel.name}`)
    this.#diag.error(
      `delivery_failed.${channel.name}`,
      `an alert could not be delivered to ${channel.name} (${result.reason}) after ${job.attempt + 1} attempt(s); it was dropped`,
    )
  }
}
