import type { Request, Response } from 'express'
import type { ScoredEvent } from './risk/engine.js'

/**
 * Users whose standing score is above the configured level, as last computed
 * by this process's risk engine. Kept in memory so the request path can ask
 * "is this user blocked?" without waiting for the store.
 *
 * A standing score only decays between events (every entry loses half its
 * points each half-life), so the score computed at `at` is, at a later `now`,
 * `score * 2^-((now - at) / halfLife)` until the next event scores. Each entry
 * therefore keeps the moment its user falls back to the level: a user who
 * stops being attacked is let in again when the score has decayed, not when
 * this process restarts (a refused login is not scored, so no later score
 * would ever lift the block).
 */
export class BlockList {
  readonly #above: number
  readonly #halfLifeMs: number
  readonly #clock: () => number
  /** userKey -> epoch ms at which the user's decaying score is back to `above`. */
  readonly #until = new Map<string, number>()
  /** userKey -> the points that blocked the user (before the cap, less what was forgiven), and when. */
  readonly #points = new Map<string, { readonly points: number; readonly at: number }>()
  /**
   * userKey -> the points an operator forgave (`unblock`), and when: they decay as the score
   * does, and only points beyond them count towards a block again.
   */
  readonly #forgiven = new Map<string, { readonly points: number; readonly at: number }>()
  #sweepAt = 1_024
  /** The latest end of any block ever set: past it, nobody is blocked (see `active`). */
  #latest = 0

  constructor(above: number, halfLifeMs: number, clock: () => number) {
    this.#above = above
    this.#halfLifeMs = halfLifeMs
    this.#clock = clock
  }

  /**
   * `score` is the standing score (capped at maxScore); `uncapped` the decayed points before
   * the cap, which decide when the block ends; `pointsAt`, when given, the points at a later
   * time (entries past the ledger's retention left out), which can end it sooner; `scored`,
   * what the event did: a login whose failures it merged into this user's ledger carries what
   * was forgiven of them (see `unblock`), and forgiveness never exceeds the points of the
   * entries it was given for, still in the ledger.
   */
  update(
    userKey: string,
    score: number,
    uncapped = score,
    pointsAt?: (at: number) => number,
    scored?: ScoredEvent,
  ): void {
    if (scored?.mergedFrom !== undefined) this.#moveForgiven(scored.mergedFrom, userKey, scored)
    // Someone typed a wrong password for this user again: an unblock holds until then. Without
    // it, the day's brute-force marks already spent on the forgiven attack left new guesses
    // scoring a few points an hour, and thousands went through before a block came back.
    if (scored?.failed === true) this.#forgiven.delete(userKey)
    if (!(score > this.#above)) {
      this.#until.delete(userKey)
      this.#points.delete(userKey)
      return
    }
    const now = this.#clock()
    // `above` may be 0: scores are rounded to hundredths, so "nothing" is below 0.005.
    const level = Math.max(this.#above, 0.005)
    let points = Math.max(score, uncapped)
    const forgiven = this.#forgivenAt(userKey, now, scored?.pointsUntil)
    if (forgiven > 0) {
      // What an operator forgave decays with the rest: only the points added since count.
      points -= forgiven
      if (!(points > this.#above)) {
        this.#until.delete(userKey)
        this.#points.delete(userKey)
        return
      }
    }
    let until = now + this.#halfLifeMs * Math.log2(points / level)
    // Decay alone is an upper bound: the ledger keeps entries for a while only, and the
    // score drops when the oldest leave it (a long attack's first entries go before its
    // last have decayed). The points only fall from now on: the earliest time they are
    // back to the level is found by halving the interval (to a second). (`pointsAt` counts
    // forgiven points too: the time it gives is never before the block's true end.)
    if (pointsAt !== undefined && pointsAt(until) <= level) {
      let lo = now
      let hi = until
      while (hi - lo > 1_000) {
        const mid = lo + (hi - lo) / 2
        if (pointsAt(mid) <= level) hi = mid
        else lo = mid
      }
      until = hi
    }
    this.#until.set(userKey, until)
    this.#points.set(userKey, { points, at: now })
    if (until > this.#latest) this.#latest = until
    // Users whose block ran out are forgotten as the list grows, so it stays the size of
    // the users actually blocked rather than of every user ever blocked.
    if (this.#until.size + this.#forgiven.size >= this.#sweepAt) {
      for (const [key, end] of this.#until) {
        if (end > now) continue
        this.#until.delete(key)
        this.#points.delete(key)
      }
      for (const key of [...this.#forgiven.keys()]) this.#forgivenAt(key, now)
      this.#sweepAt = Math.max(1_024, (this.#until.size + this.#forgiven.size) * 2)
    }
  }

  /**
   * Lifts a user's block now (an operator who knows the user was locked out by someone
   * else's guesses). The points that made it are forgiven, as they decay; points the user
   * gains from now on block them again once they alone are above the level. `false` when the
   * user was not blocked.
   */
  unblock(userKey: string): boolean {
    const now = this.#clock()
    const until = this.#until.get(userKey)
    if (until === undefined || until <= now) return false
    this.#until.delete(userKey)
    // Forgiven: the points that blocked the user, decayed to now, and what was forgiven before.
    const blocked = this.#points.get(userKey)
    this.#points.delete(userKey)
    const points =
      (blocked === undefined ? 0 : blocked.points * 2 ** (-(now - blocked.at) / this.#halfLifeMs)) +
      this.#forgivenAt(userKey, now)
    this.#forgiven.set(userKey, { points, at: now })
    return true
  }

  /**
   * A login unblocked, then logged in with: its failures now count in the account's ledger,
   * and so does what is left of their forgiveness, with what that success itself scored (the
   * takeover check, the account's own copy of the brute force): the incident the operator
   * vouched for. Without it the account was blocked at its first success after the unblock,
   * by the very points that had been forgiven. Only that: the account's own points, and any
   * gained since, still count. (Alerts are not affected: a takeover still alerts.)
   */
  #moveForgiven(from: string, to: string, scored: ScoredEvent): void {
    const now = this.#clock()
    const forgiven = this.#forgiven.get(from)
    if (forgiven === undefined) return
    this.#forgiven.delete(from)
    // Capped by what the ledger still holds of the entries up to the unblock (the login's
    // failures, merged into this one): past the ledger's retention nothing is carried, and the
    // success's own points are not forgiven either.
    const carried = Math.min(this.#forgivenAt(from, now, undefined, forgiven), scored.pointsUntil(forgiven.at))
    if (!(carried >= 0.005)) return
    this.#forgiven.set(to, { points: carried + scored.added + this.#forgivenAt(to, now), at: now })
  }

  /**
   * Forgives a user `points` now (at least: what was already forgiven stays, as it decays),
   * and lifts this process's block of them. `unblock` gives the points that blocked the user
   * here; the middleware adds what a shared store's ledger holds, so that a process that never
   * blocked the user does not block them for points another process scored.
   */
  forgive(userKey: string, points: number): void {
    const now = this.#clock()
    this.#until.delete(userKey)
    this.#points.delete(userKey)
    if (!(points >= 0.005)) return
    this.#forgiven.set(userKey, { points: Math.max(points, this.#forgivenAt(userKey, now)), at: now })
  }

  /**
   * What is still forgiven of a user's points at `now`: decayed since, and never more than the
   * points the ledger still holds from entries up to the unblock (`pointsUntil`, when known),
   * since entries leave the ledger after its retention and their forgiveness with them. 0
   * once decayed to nothing, and forgotten.
   */
  #forgivenAt(
    userKey: string,
    now: number,
    pointsUntil?: (cutoff: number) => number,
    forgiven = this.#forgiven.get(userKey),
  ): number {
    if (forgiven === undefined) return 0
    const left = forgiven.points * 2 ** (-(now - forgiven.at) / this.#halfLifeMs)
    if (left < 0.005) {
      this.#forgiven.delete(userKey)
      return 0
    }
    return pointsUntil === undefined ? left : Math.min(left, pointsUntil(forgiven.at))
  }

  has(userKey: string): boolean {
    const until = this.#until.get(userKey)
    if (until === undefined) return false
    if (until > this.#clock()) return true
    this.#until.delete(userKey)
    this.#points.delete(userKey)
    return false
  }

  get size(): number {
    return this.#until.size
  }

  /**
   * Whether anyone may be blocked now: the request path asks this before identifying a
   * user. `size` alone kept counting a block that had ended (entries go at the next sweep),
   * and every logged-in request then ran `identify` for nothing.
   */
  get active(): boolean {
    return this.#until.size > 0 && this.#clock() < this.#latest
  }
}

const HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access refused</title></head>
<body><h1>Access refused</h1><p>This account is temporarily blocked because of suspicious activity. Please contact support.</p></body></html>
`

/** 403, as JSON or HTML depending on what the client accepts. */
export const refuse = (req: Request, res: Response): void => {
  if (res.headersSent) return
  const wantsJson = typeof req.accepts === 'function' ? req.accepts(['html', 'json']) === 'json' : true
  res.statusCode = 403
  res.setHeader('cache-control', 'no-store')
  if (wantsJson) {
    res.setHeader('content-type', 'application/json; charset=utf-8')
    res.end(
      JSON.stringify({
        error: 'forbidden',
        code: 'SQREEN_USER_BLOCKED',
        message: 'This account is temporarily blocked because of suspicious activity.',
      }),
    )
  } else {
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(HTML)
  }
}
