import type { Identity } from '../event.js'

export interface LinkedUser {
  readonly userKey: string
  readonly identity: Identity
}

/**
 * Remembers which user a login key belongs to, once a login with it has
 * succeeded, so later failures for that login count against the account
 * (a brute force against an account is an attack on that user). Bounded:
 * the least recently used links are forgotten first.
 */
export class LoginLinks {
  readonly #max: number
  readonly #links = new Map<string, LinkedUser>()

  constructor(max = 50_000) {
    this.#max = max
  }

  get(loginKey: string): LinkedUser | undefined {
    const linked = this.#links.get(loginKey)
    if (linked) {
      // Map keeps insertion order: re-inserting marks the link as recently used.
      this.#links.delete(loginKey)
      this.#links.set(loginKey, linked)
    }
    return linked
  }

  set(loginKey: string, user: LinkedUser): void {
    this.#links.delete(loginKey)
    this.#links.set(loginKey, user)
    if (this.#links.size > this.#max) {
      const oldest = this.#links.keys().next().value
      if (oldest !== undefined) this.#links.delete(oldest)
    }
  }

  get size(): number {
    return this.#links.size
  }
}
