import { ClockHand } from '../clock-hand.js'
import type { Identity } from '../event.js'

export interface LinkedUser {
  readonly userKey: string
  readonly identity: Identity
  /**
   * The login as the account typed it when it logged in (in advanced mode a keyed hash of
   * it), before the normalisation that makes the link's key. A failure counts against the
   * account only when it was typed the same way (see IdentityBoundary).
   */
  readonly exact: string
  /**
   * Other accounts this login key was linked to before, most recent first (at most
   * `MAX_OTHERS`): several accounts can share a key (see `exact`), and the block check
   * must refuse the login however it was re-linked (see `IdentityBoundary.linkedUserKeysOf`).
   */
  readonly others: readonly string[]
}

/** Earlier accounts a login key remembers (see `LinkedUser.others`). */
const MAX_OTHERS = 3
/** Earlier accounts kept however many, while blocked (see `LoginLinks.#othersAfter`). */
const MAX_KEPT = 16

const NONE: readonly string[] = []

/** A link and its second chance (see `LoginLinks`). */
interface Link extends LinkedUser {
  used: boolean
}

/** A link used since eviction last passed over it is kept, once (see `ClockHand`). */
const takeSecondChance = (link: Link): boolean => {
  const used = link.used
  link.used = false
  return used
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
  readonly #hand = new ClockHand(this.#links)

  /** Whether an earlier account must stay among `others` (a blocked one: see `set`). */
  readonly #keep: (userKey: string) => boolean

  constructor(max = 50_000, keep: (userKey: string) => boolean = () => false) {
    this.#max = max
    this.#keep = keep
  }

  get(loginKey: string): LinkedUser | undefined {
    const link = this.#links.get(loginKey)
    if (link !== undefined) link.used = true
    return link
  }

  set(loginKey: string, userKey: string, identity: Identity, exact: string): void {
    const link = this.#links.get(loginKey)
    if (
      link !== undefined &&
      link.userKey === userKey &&
      link.exact === exact &&
      sameIdentity(link.identity, identity)
    ) {
      link.used = true
      return
    }
    // A new key goes to the end of the Map; a replaced one keeps its place, so it counts as used.
    const others = link === undefined ? NONE : link.userKey === userKey ? link.others : this.#othersAfter(link, userKey)
    const made: Link = { userKey, identity, exact, others, used: link !== undefined }
    this.#links.set(loginKey, made)
    if (this.#links.size > this.#max) this.#evict(made)
  }

  /**
   * The earlier accounts of a link re-linked to `userKey`: the one it was linked to, then its
   * own earlier ones, at most `MAX_OTHERS`, but never dropping one to `keep` (a blocked
   * account, up to `MAX_KEPT`): look-alike accounts logging in one after another must not
   * push a blocked victim out, or its login would tell a right password from a wrong one.
   */
  #othersAfter(link: Link, userKey: string): readonly string[] {
    const all = [link.userKey, ...link.others].filter((k) => k !== userKey)
    const kept = all.filter((k) => this.#keep(k)).slice(0, MAX_KEPT)
    const rest = all.filter((k) => !this.#keep(k)).slice(0, Math.max(0, MAX_OTHERS - kept.length))
    return [...kept, ...rest]
  }

  /** Forgets one link: the next in the Map's order not used since it was last passed over (never `spare`). */
  #evict(spare: Link): void {
    const victim = this.#hand.victim(spare, takeSecondChance)
    if (victim !== undefined) this.#links.delete(victim[0])
  }

  get size(): number {
    return this.#links.size
  }
}
