import type { Identity } from '../event.js'

export interface LinkedUser {
  readonly userKey: string
  readonly identity: Identity
}

/** A link and its second chance (see `LoginLinks`). */
interface Link extends LinkedUser {
  used: boolean
}

/** Whether two flat identities hold the same fields and values. */
const sameIdentity = (a: Identity, b: Identity): boolean => {
  if (a === b) return true
  let fields = 0
  for (const key in a) {
    if (!Object.hasOwn(a, key)) continue
    fields++
    if (!Object.hasOwn(b, key) || a[key] !== b[key]) return false
  }
  for (const key in b) if (Object.hasOwn(b, key)) fields--
  return fields === 0
}

/**
 * Remembers which user a login key belongs to, once a login with it has
 * succeeded, so later failures for that login count against the account
 * (a brute force against an account is an attack on that user). Bounded: past
 * `max` links, the oldest link not used since it was made (or since eviction
 * last passed over it) is forgotten, a second chance in the manner of CLOCK.
 * A use sets a flag instead of moving the link to the end of the Map, and a
 * user logging in again with the same identity keeps the link that is there:
 * on every successful login, a new link object (and the identity it holds)
 * would otherwise outlive the request and be copied by the young-generation
 * collector, and every move would churn the Map's table.
 */
export class LoginLinks {
  readonly #max: number
  readonly #links = new Map<string, Link>()

  constructor(max = 50_000) {
    this.#max = max
  }

  get(loginKey: string): LinkedUser | undefined {
    const link = this.#links.get(loginKey)
    if (link !== undefined) link.used = true
    return link
  }

  set(loginKey: string, userKey: string, identity: Identity): void {
    const link = this.#links.get(loginKey)
    if (link !== undefined && link.userKey === userKey && sameIdentity(link.identity, identity)) {
      link.used = true
      return
    }
    // A new key goes to the end of the Map; a replaced one keeps its place, so it counts as used.
    this.#links.set(loginKey, { userKey, identity, used: link !== undefined })
    if (this.#links.size > this.#max) this.#evict(loginKey)
  }

  /** Forgets one link: the first in the Map's order not used since it was last passed over (never `spare`). */
  #evict(spare: string): void {
    // Each link is passed over at most once, and `spare` goes behind those that were:
    // the loop ends within twice the Map's size even when every link was used.
    let budget = 2 * this.#links.size
    for (const [key, link] of this.#links) {
      if (budget-- <= 0) return
      if (key === spare || link.used) {
        link.used = false
        this.#links.delete(key)
        this.#links.set(key, link)
        continue
      }
      this.#links.delete(key)
      return
    }
  }

  get size(): number {
    return this.#links.size
  }
}
