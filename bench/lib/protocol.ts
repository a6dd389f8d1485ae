// What the parent (bench/capture.ts) and the server child (bench/lib/server.ts) share.
// Kept apart from server.ts because importing that file starts a server.

/** `forward`: the candidate plus `forward` to a local Security Hub (bench/capture.ts --forward). */
export type ServerMode = 'baseline' | 'candidate' | 'forward'
/** Which build of sqreen-auth the candidate loads: lib/ through tsx, or the tsc output in dist/. */
export type ServerTarget = 'source' | 'dist'

export interface ServerStats {
  readonly type: 'stats'
  readonly mode: ServerMode
  /** Events delivered to onEvent, by type (empty for the baseline). */
  readonly events: Record<string, number>
  /** CPU time the server process has used so far (user + system), in microseconds. */
  readonly cpuMicros: number
  /** Garbage-collection pauses of the server's main thread so far (PerformanceObserver 'gc'), ms. */
  readonly gcMillis: number
  /** Bytes that survived the server's young-generation collections so far (copied or promoted). */
  readonly survivedBytes: number
}

export type ParentMessage = { type: 'stats' } | { type: 'close' }
export type ChildMessage = { type: 'ready'; port: number } | ServerStats

/** Accounts of the cheap verify function: an in-memory map, compared synchronously. */
export const USERS: ReadonlyMap<string, string> = new Map([
  ['alice', 'correct horse'],
  ['bob', 'battery staple'],
])

/** urlencoded bodies of the login requests: one good password, one wrong one. */
export const LOGIN_OK = 'username=alice&password=correct+horse'
export const LOGIN_BAD = 'username=alice&password=wrong'
