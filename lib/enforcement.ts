import type { Request, Response } from 'express'

/**
 * Users whose standing score is above the configured level, as last computed
 * by this process's risk engine. Kept in memory so the request path can ask
 * "is this user blocked?" without waiting for the store.
 */
export class BlockList {
  readonly #above: number
  readonly #scores = new Map<string, number>()

  constructor(above: number) {
    this.#above = above
  }

  update(userKey: string, score: number): void {
    if (score > this.#above) this.#scores.set(userKey, score)
    else this.#scores.delete(userKey)
  }

  has(userKey: string): boolean {
    return this.#scores.has(userKey)
  }

  get size(): number {
    return this.#scores.size
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
