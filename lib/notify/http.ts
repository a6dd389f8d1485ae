/**
 * The subset of `fetch` the notifiers and the forwarder use; node-fetch by default,
 * injectable for tests. The body is a string, or (the forwarder's batches) the exact
 * bytes that were signed, which `fetch` sends as they are.
 */
export type FetchLike = (
  url: string,
  init: {
    method: string
    headers: Record<string, string>
    body: string | Uint8Array
    redirect: 'manual'
    signal: AbortSignal
  },
) => Promise<{ status: number; headers: { get(name: string): string | null }; text(): Promise<string> }>

let defaultFetch: FetchLike | undefined

/** node-fetch, loaded on first use so an app without HTTP notifications never loads it. */
export const nodeFetch = async (): Promise<FetchLike> => {
  defaultFetch ??= (await import('node-fetch')).default as unknown as FetchLike
  return defaultFetch
}

/** What one delivery attempt concluded. */
export type SendResult =
  | { readonly ok: true }
  | {
      readonly ok: false
      /** Try again later (after `retryAfterMs` when the receiver said so). */
      readonly retry: boolean
      readonly retryAfterMs?: number
      /** The receiver is gone or refuses us for good: stop using this channel. */
      readonly disable?: boolean
      readonly reason: string
    }

/** `Retry-After` in seconds or as an HTTP date; capped so a hostile receiver cannot park us for hours. */
export const retryAfterMs = (header: string | null, now = Date.now(), cap = 10 * 60_000): number | undefined => {
  if (header === null) return undefined
  const seconds = Number(header)
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, cap) : undefined
}

/**
 * POSTs JSON with a timeout and without following redirects (a redirect could
 * send a signed alert somewhere it was not meant to go).
 */
export const postJson = async (
  fetchFn: FetchLike,
  url: string,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<{ status: number; retryAfter: string | null }> => {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), timeoutMs)
  try {
    const res = await fetchFn(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'sqreen-auth', ...headers },
      body,
      redirect: 'manual',
      signal: controller.signal,
    })
    // Drain the body so the connection can be reused.
    await res.text().catch(() => '')
    return { status: res.status, retryAfter: res.headers.get('retry-after') }
  } finally {
    clearTimeout(timer)
  }
}

/** The usual reading of an HTTP answer for an alert delivery. */
export const classifyStatus = (status: number, retryAfter: string | null): SendResult => {
  if (status >= 200 && status < 300) return { ok: true }
  if (status === 429 || status === 408 || status >= 500) {
    const after = retryAfterMs(retryAfter)
    return after === undefined
      ? { ok: false, retry: true, reason: `HTTP ${status}` }
      : { ok: false, retry: true, retryAfterMs: after, reason: `HTTP ${status}` }
  }
  if (status === 410) return { ok: false, retry: false, disable: true, reason: 'HTTP 410 (gone)' }
  if (status >= 300 && status < 400)
    return { ok: false, retry: false, reason: `HTTP ${status} (redirects are not followed)` }
  return { ok: false, retry: false, reason: `HTTP ${status}` }
}
