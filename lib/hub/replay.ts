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
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  get size(): number {
    return this.#expires.size
  }

  /** `'ok'` for the first use of `jti`, `'replayed'` after, `'full'` when no room is left. */
  claim(jti: string, expiresAt: number, now: number): 'ok' | 'replayed' | 'full' {
    const seen = this.#expires.get(jti)
    if (seen !== undefined && seen >= now) return 'replayed'
    this.#sweep(now)
    if (this.#expires.size >= this.#max) {
      // Lifetimes differ between senders, so an expired id may hide behind a live one.
      for (const [id, exp] of this.#expires) if (exp < now) this.#expires.delete(id)
      if (this.#expires.size >= this.#max) return 'full'
    }
    this.#expires.set(jti, expiresAt)
    return 'ok'
  }

  /** Drops expired ids from the front (insertion order is close to expiry order): amortised O(1). */
  #sweep(now: number): void {
    for (const [id, exp] of this.#expires) {
      if (exp >= now) return
      this.#expires.delete(id)
    }
  }
}

/**
 * Event ids seen recently, so a batch re-sent after a lost answer (a new `jti`,
 * the same events) is not scored twice. First in, first out, at most `max`.
 */
export class RecentIds {
  readonly #ids = new Set<string>()
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  /** `true` the first time an id is seen. */
  add(id: string): boolean {
    if (this.#ids.has(id)) return false
    this.#ids.add(id)
    if (this.#ids.size > this.#max) {
      const oldest = this.#ids.values().next().value
      if (oldest !== undefined) this.#ids.delete(oldest)
    }
    return true
  }
}
