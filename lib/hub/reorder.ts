import type { AuthEvent } from '../event.js'
import { eventTime } from '../event.js'

/**
 * Holds accepted events for a short window and scores them in event-time order.
 *
 * Several application servers forward to one hub, each on its own flush timer
 * (`forward.flushInterval`, 1 s by default), so batches reach the hub a second or
 * two out of order: a brute force forwarded by one server can arrive after the
 * success another server saw later. Scored as they arrive, the success would find
 * no brute force to follow (no `success_after_brute_force`, the login's ledger not
 * merged), and ledger entries would be dated by whichever event happened to come
 * first. The engine scores each event as of its own time; what it needs is to see
 * them in that order.
 *
 * An event waits until `windowMs` after it arrived; then it is scored together with
 * every held event not later than it (those arrived later but happened earlier), in
 * time order, ties in arrival order. An event arriving later than the window after its
 * peers is still scored, only out of order, as it was before the window existed.
 * Bounded: past `max` held events, or past `maxBytes` of their JSON, the earliest are
 * scored at once.
 */
export class ReorderBuffer {
  // A binary min-heap by (time, arrival), in parallel arrays (no entry objects).
  readonly #times: number[] = []
  readonly #seqs: number[] = []
  readonly #events: AuthEvent[] = []
  /** The JSON bytes each held event came in (its share of its batch's body). */
  readonly #bytes: number[] = []
  #heldBytes = 0
  /** Arrival order, in parallel arrays: when each event arrived, and its time (the release cut-off once due). */
  #arrivedAt: number[] = []
  #arrivedTime: number[] = []
  #head = 0
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  /** The scoring loop in progress: one at a time, so a user's events never interleave. */
  #running: Promise<void> = Promise.resolve()

  constructor(
    readonly windowMs: number,
    readonly max: number,
    readonly score: (event: AuthEvent) => Promise<void> | undefined,
    readonly failed: (err: unknown) => void,
    readonly now: () => number = Date.now,
    readonly maxBytes: number = Number.POSITIVE_INFINITY,
  ) {}

  /** Events held, not scored yet. */
  get size(): number {
    return this.#events.length
  }

  /** Holds an event that came in as `bytes` of JSON. */
  add(event: AuthEvent, bytes = 0): void {
    const time = eventTime(event.at)
    this.#push(time, event, bytes)
    this.#arrivedAt.push(this.now())
    this.#arrivedTime.push(time)
    if (this.#events.length > this.max) {
      // Too many held (a flood): the earliest go now, in order, rather than memory growing.
      this.#release(Number.POSITIVE_INFINITY, this.#events.length - this.max)
    }
    // Too large (the schema allows 20 kB an event): the earliest go until the rest fits.
    if (this.#heldBytes > this.maxBytes)
      this.#release(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, this.maxBytes)
    this.#arm()
  }

  /** Scores every held event now, in time order, and waits for the scoring to end. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#arrivedAt = []
    this.#arrivedTime = []
    this.#head = 0
    this.#release(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY)
    await this.#running
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#head >= this.#arrivedAt.length) return
    const due = (this.#arrivedAt[this.#head] as number) + this.windowMs
    this.#timer = setTimeout(() => this.#due(), Math.max(0, due - this.now()))
    // Held events do not keep a process alive; close() flushes them.
    this.#timer.unref()
  }

  #due(): void {
    this.#timer = undefined
    const now = this.now()
    let cutoff = Number.NEGATIVE_INFINITY
    const at = this.#arrivedAt
    const times = this.#arrivedTime
    while (this.#head < at.length) {
      if ((at[this.#head] as number) + this.windowMs > now) break
      const time = times[this.#head] as number
      if (time > cutoff) cutoff = time
      this.#head++
    }
    if (this.#head > 1024 && this.#head * 2 > at.length) {
      this.#arrivedAt = at.slice(this.#head)
      this.#arrivedTime = times.slice(this.#head)
      this.#head = 0
    }
    this.#release(cutoff, Number.POSITIVE_INFINITY)
    this.#arm()
  }

  /**
   * Takes held events up to `cutoff` (at most `count`, and only until what stays holds at
   * most `keepBytes`) off the heap, in order, and queues their scoring.
   */
  #release(cutoff: number, count: number, keepBytes = -1): void {
    const out: AuthEvent[] = []
    while (
      out.length < count &&
      this.#events.length > 0 &&
      (this.#times[0] as number) <= cutoff &&
      this.#heldBytes > keepBytes
    ) {
      out.push(this.#pop())
    }
    if (out.length === 0) return
    this.#running = this.#running.then(async () => {
      for (const event of out) {
        try {
          const pending = this.score(event)
          if (pending !== undefined) await pending
        } catch (err) {
          this.failed(err)
        }
      }
    })
  }

  #less(i: number, j: number): boolean {
    const a = this.#times[i] as number
    const b = this.#times[j] as number
    return a < b || (a === b && (this.#seqs[i] as number) < (this.#seqs[j] as number))
  }

  #swap(i: number, j: number): void {
    const times = this.#times
    const seqs = this.#seqs
    const events = this.#events
    const time = times[i] as number
    times[i] = times[j] as number
    times[j] = time
    const seq = seqs[i] as number
    seqs[i] = seqs[j] as number
    seqs[j] = seq
    const event = events[i] as AuthEvent
    events[i] = events[j] as AuthEvent
    events[j] = event
    const bytes = this.#bytes
    const b = bytes[i] as number
    bytes[i] = bytes[j] as number
    bytes[j] = b
  }

  #push(time: number, event: AuthEvent, bytes: number): void {
    let i = this.#events.length
    this.#times.push(time)
    this.#seqs.push(this.#seq++)
    this.#events.push(event)
    this.#bytes.push(bytes)
    this.#heldBytes += bytes
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.#less(i, parent)) break
      this.#swap(i, parent)
      i = parent
    }
  }

  #pop(): AuthEvent {
    const top = this.#events[0] as AuthEvent
    const last = this.#events.length - 1
    this.#swap(0, last)
    this.#times.pop()
    this.#seqs.pop()
    this.#events.pop()
    this.#heldBytes -= this.#bytes.pop() as number
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let least = i
      if (left < last && this.#less(left, least)) least = left
      if (right < last && this.#less(right, least)) least = right
      if (least === i) break
      this.#swap(i, least)
      i = least
    }
    return top
  }
}
