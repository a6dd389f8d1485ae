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

  /** The most recently used key: using it again needs no re-insertion (a login retried in a row). */
  #last: string | undefined = undefined

  get(loginKey: string): LinkedUser | undefined {
    const linked = this.#links.get(loginKey)
    if (linked && loginKey !== this.#last) {
      this.#last = loginKey
      // Map keeps insertion order: re-inserting marks the link as recently used.
      this.#links.delete(loginKey)
      this.#links.set(loginKey, linked)
    }
    return linked
  }

  set(loginKey: string, user: LinkedUser): void {
    // Already the most recent entry (a user logging in again): replacing the value keeps the order right.
    if (loginKey !== this.#last) {
      this.#last = loginKey
      this.#links.delete(loginKey)
    }
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
