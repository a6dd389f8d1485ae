import { createRequire } from 'node:module'

// autocannon ships no type declarations; these are the parts of its programmatic
// API (v9) the benchmark uses, typed locally instead of adding @types/autocannon.

export interface LoadRequest {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: string
}

export interface LoadOptions {
  url: string
  connections: number
  /** Seconds; autocannon stops at the next whole-second sample after it. */
  duration: number
  pipelining?: number
  /** Each connection cycles through these in order. */
  requests: LoadRequest[]
}

interface Histogram {
  average: number
  p50: number
  p99: number
  total: number
}

export interface LoadResult {
  /** Seconds the run lasted. */
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  latency: Histogram
  requests: Histogram
  statusCodeStats: Record<string, { count: number }>
}

type Autocannon = (options: LoadOptions) => PromiseLike<LoadResult>

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

export interface Measurement {
  /** Completed responses (any status) per second over the whole run. */
  rps: number
  p50: number
  p99: number
  responses: number
  errors: number
  timeouts: number
  /** Responses by HTTP status. */
  statuses: Record<string, number>
}

/** One load run; returns throughput from the total count (not the per-second samples, too few in a 1 s run). */
export const measure = async (options: LoadOptions): Promise<Measurement> => {
  const result = await autocannon(options)
  const statuses: Record<string, number> = {}
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) statuses[code] = count
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    responses: result.requests.total,
    errors: result.errors,
    timeouts: result.timeouts,
    statuses,
  }
}
