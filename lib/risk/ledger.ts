import type { LedgerEntry } from '../store/store.js'

/** A user's risk, with the entries that explain it. */
export interface RiskSnapshot {
  readonly userKey: string
  /** Standing score: every entry's points decayed by the half-life, capped. */
  readonly score: number
  /** Points added within the trigger window (24 hours by default), not decayed. */
  readonly rise24h: number
  /** Entries still on the ledger, oldest first. */
  readonly entries: readonly LedgerEntry[]
  /**
   * Set when the store could not be read (a Redis outage, say): the snapshot is empty
   * because nothing could be read, not because the user has no record.
   */
  readonly unavailable?: true
}

export interface LedgerMaths {
  readonly halfLifeMs: number
  readonly maxScore: number
  readonly windowMs: number
}

const round = (n: number): number => Math.round(n * 100) / 100

/**
 * The ledger's points, each decayed with the half-life, summed without a cap. Every entry
 * decays by the same factor, so the sum itself halves every half-life until the next entry:
 * what lets a block list work out when a user falls back below its level.
 */
export const decayedPoints = (entries: readonly LedgerEntry[], now: number, maths: LedgerMaths): number => {
  let score = 0
  for (const e of entries) {
    const age = Math.max(0, now - e.at)
    score += e.points * 2 ** (-age / maths.halfLifeMs)
  }
  return score
}

/** Standing score: points decay with a half-life (7 days by default) and the total is capped. */
export const standingScore = (entries: readonly LedgerEntry[], now: number, maths: LedgerMaths): number =>
  round(Math.min(maths.maxScore, decayedPoints(entries, now, maths)))

export const riseWithin = (entries: readonly LedgerEntry[], now: number, windowMs: number): number => {
  let rise = 0
  for (const e of entries) if (e.at > now - windowMs) rise += e.points
  return round(rise)
}

export const snapshot = (
  userKey: string,
  entries: readonly LedgerEntry[],
  now: number,
  maths: LedgerMaths,
): RiskSnapshot => ({
  userKey,
  score: standingScore(entries, now, maths),
  rise24h: riseWithin(entries, now, maths.windowMs),
  entries,
})
