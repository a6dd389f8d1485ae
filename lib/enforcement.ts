import type { Request, Response } from 'express'

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
  #sweepAt = 1_024

  constructor(above: number, halfLifeMs: number, clock: () => number) {
    this.#above = above
    this.#halfLifeMs = halfLifeMs
    this.#clock = clock
  }

  /**
   * `score` is the standing score (capped at maxScore); `uncapped` the decayed points before
   * the cap, which decide when the block ends; `pointsAt`, when given, the points at a later
   * time (entries past the ledger's retention left out), which can end it sooner.
   */
  update(userKey: string, score: number, uncapped = score, pointsAt?: (at: number) => number): void {
    if (!(score > this.#above)) {
      this.#until.delete(userKey)
      return
    }
    const now = this.#clock()
    // `above` may be 0: scores are rounded to hundredths, so "nothing" is below 0.005.
    const level = Math.max(this.#above, 0.005)
    let until = now + this.#halfLifeMs * Math.log2(Math.max(score, uncapped) / level)
    // Decay alone is an upper bound: the ledger keeps entries for a while only, and the
    // score drops when the oldest leave it (a long attack's first entries go before its
    // last have decayed). The points only fall from now on: the earliest time they are
    // back to the level is found by halving the interval (to a second).
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
    // Users whose block ran out are forgotten as the list grows, so it stays the size of
    // the users actually blocked rather than of every user ever blocked.
    if (this.#until.size >= this.#sweepAt) {
      for (const [key, end] of this.#until) if (end <= now) this.#until.delete(key)
      this.#sweepAt = Math.max(1_024, this.#until.size * 2)
    }
  }

  has(userKey: string): boolean {
    const until = this.#until.get(userKey)
    if (until === undefined) return false
    if (until > this.#clock()) return true
    this.#until.delete(userKey)
    return false
  }

  get size(): number {
    return this.#until.size
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
