/**
 * Remembers the `jti` of every accepted batch until its `exp` (plus the clock
 * tolerance), so a captured batch cannot be replayed while it is still valid;
 * after that the signature check's `exp` refuses it anyway, which is what lets
 * the cache forget. Bounded: when it is full of live ids the hub asks senders
 * to come back later (503) rather than forgetting ids early, which would open
 * a replay window.
 */
export class ReplayCache {
  readonly #expires = new Map<string, number>()
  /** Ids in arrival order, swept from `#head`; close to expiry order (senders use similar lifetimes). */
  #order: string[] = []
  #head = 0
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  get size(): number {
    return this.#expires.size
  }

  /** `'ok'` for the first use of `jti`, `'replayed'` after, `'full'` when no room is left. */
  claim(jti: string, expiresAt: number, now: number): 'ok' | 'replayed' | 'full' {
    this.#sweep(now)
    const seen = this.#expires.get(jti)
    if (seen !== undefined && seen >= now) return 'replayed'
    if (this.#expires.size >= this.#max) {
      // Lifetimes differ between senders, so an expired id may hide behind a live one.
      for (const [id, exp] of this.#expires) if (exp < now) this.#expires.delete(id)
      this.#order = [...this.#expires.keys()]
      this.#head = 0
      if (this.#expires.size >= this.#max) return 'full'
    }
    if (seen === undefined) this.#order.push(jti)
    this.#expires.set(jti, expiresAt)
    return 'ok'
  }

  /**
   * Forgets a claim that did not stick (the shared store could not be asked, so the
   * batch was not scored and the sender retries): a replay of it must then be judged
   * by the store again, not refused here. Its place in the arrival order is left for
   * the sweep, which skips ids no longer in the map.
   */
  release(jti: string): void {
    this.#expires.delete(jti)
  }

  /** Forgets expired ids from the front of the arrival order: amortised O(1) per claim. */
  #sweep(now: number): void {
    while (this.#head < this.#order.length) {
      const id = this.#order[this.#head] as string
      const exp = this.#expires.get(id)
      if (exp !== undefined && exp >= now) break
      this.#expires.delete(id)
      this.#head++
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head)
      this.#head = 0
    }
  }
}

/**
 * Event ids seen recently, so a batch re-sent after a lost answer (a new `jti`,
 * the same events) is not scored twice. First in, first out, at most `max`: a
 * ring of the ids in arrival order says which one to forget, in O(1).
 */
export class RecentIds {
  readonly #ids = new Set<string>()
  readonly #ring: (string | undefined)[]
  #next = 0

  constructor(max: number) {
    this.#ring = new Array<string | undefined>(max)
  }

  /** Whether an id was added and not yet forgotten (adds nothing). */
  has(id: string): boolean {
    return this.#ids.has(id)
  }

  /** `true` the first time an id is seen. */
  add(id: string): boolean {
    if (this.#ids.has(id)) return false
    const oldest = this.#ring[this.#next]
    if (oldest !== undefined) this.#ids.delete(oldest)
    this.#ring[this.#next] = id
    this.#next = (this.#next + 1) % this.#ring.length
    this.#ids.add(id)
    return true
  }
}
