/** Median of a non-empty sample (mean of the two middle values for an even count). */
export const median = (values: readonly number[]): number => {
  if (values.length === 0) throw new Error('median of an empty sample')
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export const min = (values: readonly number[]): number => Math.min(...values)
export const max = (values: readonly number[]): number => Math.max(...values)

/**
 * Order of the two configurations in each round: A B, B A, A B, ... (ABBA blocks).
 * Alternating who goes first cancels a linear drift of the machine (thermal, a
 * neighbour's load ramping up) instead of always charging it to the second one.
 */
export const interleave = <T>(a: T, b: T, rounds: number): T[][] =>
  Array.from({ length: rounds }, (_, i) => (i % 2 === 0 ? [a, b] : [b, a]))

export const pct = (ratio: number): string => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`
