import { createRequire } from 'node:module'
import type expressModule from 'express'
import type { ErrorRequestHandler, NextFunction, Request, Response, Router } from 'express'
import { createDiagnostics, type DiagnosticsSnapshot } from '../diagnostics.js'
import { SqreenAuthError } from '../errors.js'
import { createDispatcher } from '../notify/dispatcher.js'
import type { OptionsInput } from '../options.js'
import type { RiskAlert } from '../risk/alert.js'
import { createRiskEngine, scoringSettings } from '../risk/engine.js'
import { keyedIpRef } from '../risk/ip.js'
import type { RiskSnapshot } from '../risk/ledger.js'
import { MemoryStore } from '../store/memory.js'
import { HUB_CSS, HUB_JS } from './assets.js'
import { createAuth, type Principal, SESSION_COOKIE } from './auth.js'
import { BodyPool } from './body-pool.js'
import { BATCH_CONTENT_TYPE, BATCH_SIGNATURE_HEADER, CLOSING, createIngest, sharedStore } from './ingest.js'
import { type HubOptions, resolveHubOptions } from './options.js'
import { errorPage, loginPage, notFoundPage, overviewPage, type PageContext, userPage } from './pages.js'
import { createQueries, StoreUnavailableError } from './queries.js'
import { HubViews } from './views.js'

export interface SqreenHub extends Router {
  /** A user's risk as the hub's engine sees it. */
  risk(userKey: string): Promise<RiskSnapshot>
  /** Counters (events in, accepted, rejected, duplicates, dropped upstream, deliveries...) and problems. */
  stats(): DiagnosticsSnapshot
  /**
   * Scores the events held for reordering (`reorderWindow`) now and waits for them: what
   * a test or a graceful shutdown wants before reading scores.
   */
  flush(): Promise<void>
  /**
   * Refuses new batches (503 `closing`, with Retry-After: the forwarders keep them and
   * retry), waits for the batches being scored (bounded by `delivery.closeTimeout`), scores
   * the events it holds, waits for alert deliveries (bounded), then releases the store it
   * created. Idempotent.
   */
  close(): Promise<void>
}

const loadExpress = (): typeof expressModule => {
  try {
    // Resolved from this package, which npm dedupes with the application's copy (a peer
    // dependency); loaded here, not at import time, so sqreenAuth() never needs express.
    return createRequire(import.meta.url)('express') as typeof expressModule
  } catch {
    throw new SqreenAuthError(
      'ERR_SQREEN_HUB_EXPRESS',
      'sqreenHub() returns an Express router and needs the "express" package (npm install express).',
    )
  }
}

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/**
 * Headers every hub answer carries. The application's own (helmet's, say) win
 * where it set them; where it set none, the dashboard still gets a strict policy.
 */
const secure = (res: Response): void => {
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('X-Content-Type-Options', 'nosniff')
  if (!res.getHeader('Referrer-Policy')) res.setHeader('Referrer-Policy', 'no-referrer')
  if (!res.getHeader('X-Frame-Options')) res.setHeader('X-Frame-Options', 'DENY')
  if (!res.getHeader('Content-Security-Policy')) res.setHeader('Content-Security-Policy', CSP)
}

/** The raw request body, or why it cannot be had. */
type Body = Buffer | 'too_large' | 'consumed' | 'over_budget' | 'timeout' | 'aborted'

/** One upload's share of the hub's byte budget. */
interface Reservation {
  /** Grows the share to `bytes` (never shrinks it); `false`, holding what it held, when the budget cannot. */
  grow(bytes: number): boolean
  /** Gives the share back. Idempotent. */
  release(): void
}

/**
 * Bytes of request bodies being received or scored at once, across all senders. A body
 * is read before its signature can be checked, so without a shared bound a few slow
 * uploads, signed or not, could each hold `limits.body` for as long as they liked.
 */
const createBudget = (limit: number): (() => Reservation) => {
  let used = 0
  return () => {
    let held = 0
    let released = false
    return {
      grow(bytes) {
        if (released) return false
        if (bytes <= held) return true
        if (used - held + bytes > limit) return false
        used += bytes - held
        held = bytes
        return true
      },
      release() {
        if (released) return
        released = true
        used -= held
        held = 0
      },
    }
  }
}

/**
 * A detached compact JWS, `<protected header>..<signature>`, of a plausible size: checked
 * before the body is read, so a request that can never verify costs no body bytes. The
 * signature part may be empty: `alg: none` is then refused by the verifier, with its own answer.
 */
const DETACHED_JWS = /^[A-Za-z0-9_-]{1,2048}\.\.[A-Za-z0-9_-]{0,1024}$/

/** setTimeout fires at once past 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647

/**
 * The raw request body as bytes (the batch signature covers them exactly), bounded by
 * `limit`, by the hub's byte budget (`reservation`, grown chunk by chunk with the bytes
 * received) and by `timeoutMs` from now to the last byte. Always settles:
 * on the body's end, past a bound, on the deadline, or when the client goes away.
 */
const readBody = (
  req: Request,
  limit: number,
  reservation: Reservation,
  timeoutMs: number,
  pool: BodyPool,
): Promise<Body> => {
  // An application-wide body parser may have read it already: express.raw() and express.text()
  // leave the bytes (or their UTF-8 text); express.json() leaves an object, whose bytes are gone.
  const parsed = req.body as unknown
  if (Buffer.isBuffer(parsed)) return Promise.resolve(parsed.length > limit ? 'too_large' : parsed)
  if (typeof parsed === 'string') {
    const bytes = Buffer.from(parsed, 'utf8')
    return Promise.resolve(bytes.length > limit ? 'too_large' : bytes)
  }
  // Read by someone else (express.json(), say): waiting for 'end' would wait forever.
  if (req.readableEnded) return Promise.resolve('consumed')
  // The client (or a proxy that gave up on us: nginx's proxy_read_timeout while a slow
  // middleware ran before the hub) is gone already: no 'data', 'end' or 'close' will come,
  // and waiting out bodyTimeout then logged a slow upload that never was.
  if (req.destroyed) return Promise.resolve('aborted')
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve('too_large')
  // The share grows with the bytes actually received, never with what a request declares:
  // reserving a declared Content-Length up front let a few connections that send nothing
  // hold the whole budget (every real batch refused until their bodyTimeout).
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    const settle = (result: Body): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onGone)
      req.off('close', onClose)
      // Past this point nothing of the body is kept: a gone client's share is free at once.
      if (result === 'aborted') reservation.release()
      resolve(result)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) settle('too_large')
      else if (!reservation.grow(size)) settle('over_budget')
      else chunks.push(chunk)
    }
    const onEnd = (): void => settle(pool.take(chunks, size))
    // An aborted request is destroyed: 'error' (when listened to) and 'close' before 'end'.
    const onGone = (): void => settle('aborted')
    const onClose = (): void => {
      if (!req.complete) settle('aborted')
    }
    const timer = setTimeout(() => settle('timeout'), Math.min(timeoutMs, MAX_TIMER_MS))
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onGone)
    req.once('close', onClose)
  })
}

/** What the verifier answers for a signature that is not `<protected header>..<signature>`. */
const NOT_DETACHED_MESSAGE = `the ${BATCH_SIGNATURE_HEADER} header must hold a detached JWS ("<protected header>..<signature>") of the body`

const wantsCrossSite = (req: Request): boolean => req.headers['sec-fetch-site'] === 'cross-site'

/**
 * The sign-in form's token, however the application parsed the body before the hub: an
 * object (the hub's own urlencoded parser, or the app's), or the raw text or bytes an
 * application-wide `express.text()` / `express.raw()` for every type left (the hub reads
 * batches from those too).
 */
const formToken = (body: unknown): unknown => {
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    return new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8')).get('token') ?? undefined
  }
  return (body as { token?: unknown } | undefined)?.token
}

/**
 * The self-hosted Security Hub: an Express router that receives signed batches
 * from `sqreenAuth({ forward })`, scores them with the same risk engine, raises
 * the same alerts centrally, and serves a JSON API and a dashboard. Mount it
 * where you like: `app.use('/sqreen', sqreenHub({ key, token }))`.
 *
 * - `POST /v1/events`: signed batches (a JSON body, its detached JWS in `Sqreen-Signature`;
 *   the configured key's algorithm only).
 * - `GET /v1/users?sort=score|rise&limit=&offset=`, `GET /v1/users/:userKey`, `GET /v1/alerts`,
 *   `GET /v1/stats`: JSON, for `Authorization: Bearer <token or JWT>` or a session.
 * - `GET /`, `GET /user?key=<userKey>`: the dashboard; `GET|POST /login`, `POST /logout`.
 */
export const sqreenHub = (options: OptionsInput<HubOptions>): SqreenHub => {
  const config = resolveHubOptions(options)
  const express = loadExpress()
  const diag = createDiagnostics(config.logger)
  const store = config.store ?? new MemoryStore()
  const views = new HubViews(config.limits)
  const dispatcher = createDispatcher(config, diag)
  const engine = createRiskEngine(
    {
      ...scoringSettings(config),
      store,
      ...(config.secret ? { ipRef: keyedIpRef(config.secret) } : {}),
      onAlert: (alert: RiskAlert) => {
        views.alert(alert)
        dispatcher.dispatch(alert)
      },
    },
    diag,
  )
  const ingest = createIngest(config, engine, views, diag)
  const queries = createQueries(engine, views, config)
  const auth = createAuth(config, sharedStore(config), diag)
  const reserve = createBudget(config.limits.inflight)
  // Idle body buffers kept for the next batches: a few batches' worth, never more than the budget.
  const bodies = new BodyPool(Math.min(config.limits.inflight, 4 * 1024 * 1024))
  const router = express.Router()
  let closing: Promise<void> | undefined

  /**
   * Where browsers reach the hub: `publicPath` when a proxy serves it under another path than
   * its mount path, else the mount path. Links, redirects and the session cookie's `Path` are
   * absolute, built from it: relative ones depend on the path the browser used, which the hub
   * cannot see behind a proxy that decodes and normalises paths (`%2F`, `..`, `//`).
   */
  const baseOf = (req: Request): string => config.publicPath ?? req.baseUrl
  const ctx = (req: Request, principal?: Principal): PageContext =>
    principal === undefined ? { base: baseOf(req) } : { base: baseOf(req), subject: principal.subject }

  const html = (res: Response, status: number, body: string): void => {
    secure(res)
    res.status(status).type('html').send(body)
  }

  const json = (res: Response, status: number, body: unknown): void => {
    secure(res)
    res.status(status).type('json').send(JSON.stringify(body))
  }

  /** Counted and logged as the ingest counts and logs the batches it refuses. */
  const refused = (status: number, error: string, message: string): void => {
    diag.count('hub.batches_refused')
    diag.warn(`hub_batch_refused.${error}`, `a forwarded batch was refused (HTTP ${status}): ${message}`)
  }

  /** Never lets an async handler's error escape (Express 4 would not catch it). */
  const guarded =
    (handler: (req: Request, res: Response, next: NextFunction) => Promise<void>) =>
    (req: Request, res: Response, next: NextFunction): void => {
      handler(req, res, next).catch((err: unknown) => {
        if (err instanceof StoreUnavailableError) {
          // Counted and logged by the engine (store_errors, risk_read_failed).
          if (!res.headersSent) json(res, 503, { error: 'store_unavailable' })
          return
        }
        diag.error('hub_handler_failed', 'a hub request failed', err)
        if (!res.headersSent) json(res, 500, { error: 'internal' })
      })
    }

  // Ingest: authenticated by the batch signature itself, not by the token.
  router.post(
    '/v1/events',
    guarded(async (req, res) => {
      // First: a hub that is shutting down scores nothing more (see close()).
      if (closing !== undefined) {
        // Not a byte of the body read: the forwarder keeps the batch and sends it again.
        res.setHeader('Retry-After', String(CLOSING.retryAfterSeconds))
        res.setHeader('Connection', 'close')
        json(res, CLOSING.status, CLOSING.body)
        return
      }
      const type = String(req.headers['content-type'] ?? '')
        .split(';')[0]
        ?.trim()
        .toLowerCase()
      if (type !== BATCH_CONTENT_TYPE) {
        // Unread bytes may follow every early answer: close rather than drain them.
        res.setHeader('Connection', 'close')
        json(res, 415, { error: 'content_type', message: `send the signed batch as ${BATCH_CONTENT_TYPE}` })
        return
      }
      // Cheap refusals first, before a byte of the body is read or held.
      const signature = req.headers[BATCH_SIGNATURE_HEADER]
      if (typeof signature !== 'string' || !DETACHED_JWS.test(signature)) {
        // The verifier's own answer to a missing or malformed signature (existing senders see no change).
        refused(400, 'malformed', NOT_DETACHED_MESSAGE)
        res.setHeader('Connection', 'close')
        json(res, 400, { error: 'malformed', message: NOT_DETACHED_MESSAGE })
        return
      }
      const reservation = reserve()
      let body: Body | undefined
      try {
        body = await readBody(req, config.limits.body, reservation, config.bodyTimeoutMs, bodies)
        if (body === 'aborted') return // Nobody to answer.
        if (body === 'too_large') {
          diag.count('hub.batches_refused')
          res.setHeader('Connection', 'close')
          json(res, 413, { error: 'too_large', message: `a batch may be at most ${config.limits.body} bytes` })
          return
        }
        if (body === 'over_budget') {
          // Overload, not a bad batch: a 5xx, so the forwarders keep their events and retry.
          diag.count('hub.busy')
          diag.warn(
            'hub_uploads_over_budget',
            `batch bodies being received and scored reached limits.inflight (${config.limits.inflight} bytes); more were asked to retry`,
          )
          res.setHeader('Retry-After', '1')
          res.setHeader('Connection', 'close')
          json(res, 503, { error: 'busy', message: 'the hub is receiving other batches; retry later' })
          return
        }
        if (body === 'timeout') {
          refused(408, 'timeout', `the body did not arrive within ${config.bodyTimeoutMs} ms`)
          res.setHeader('Connection', 'close')
          json(res, 408, { error: 'timeout', message: `a batch body must arrive within ${config.bodyTimeoutMs} ms` })
          return
        }
        if (body === 'consumed') {
          // The hub's setup, not the sender, is at fault: a 5xx keeps the forwarders' events
          // queued (they retry) until the hub is mounted before the body parser.
          diag.error(
            'hub_body_consumed',
            'a body parser mounted before the hub (express.json()?) read a forwarded batch, whose signature covers the exact bytes: mount the hub before it',
          )
          json(res, 500, { error: 'body_consumed', message: 'the hub could not read the batch body' })
          return
        }
        const result = await ingest.ingest(body, signature)
        if (result.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(result.retryAfterSeconds))
        json(res, result.status, result.body)
      } finally {
        // Every path ends here (readBody always settles): the bytes are no longer held.
        reservation.release()
        if (Buffer.isBuffer(body)) bodies.give(body)
      }
    }),
  )

  router.get('/static/hub.css', (_req, res) => {
    res.setHeader('Cache-Control', 'no-cache')
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.type('css').send(HUB_CSS)
  })
  // The page's icon: a link to nothing here, not a data: URL, which a strict CSP
  // (img-src 'self') refuses and reports on every page load.
  router.get('/static/favicon.ico', (_req, res) => {
    res.setHeader('Cache-Control', 'max-age=86400')
    res.status(204).end()
  })
  router.get('/static/hub.js', (_req, res) => {
    res.setHeader('Cache-Control', 'no-cache')
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.type('js').send(HUB_JS)
  })

  router.get(
    '/login',
    guarded(async (req, res) => {
      if (await auth.session(req)) res.redirect(303, `${baseOf(req)}/`)
      else html(res, 200, loginPage(ctx(req)))
    }),
  )

  router.post(
    '/login',
    express.urlencoded({ extended: false, limit: '16kb' }),
    guarded(async (req, res) => {
      if (wantsCrossSite(req)) {
        html(res, 403, loginPage(ctx(req), 'Sign in from the hub itself.'))
        return
      }
      const given = formToken(req.body)
      const principal = typeof given === 'string' ? await auth.verify(given.trim()) : undefined
      if (principal === undefined) {
        diag.count('hub.logins_failed')
        html(res, 401, loginPage(ctx(req), 'That token is not valid.'))
        return
      }
      // A JWT accepted only within the clock tolerance: its session would already be over,
      // and the dashboard would send the operator back here without a word.
      if (principal.expiresAt <= Date.now()) {
        diag.count('hub.logins_failed')
        html(res, 401, loginPage(ctx(req), 'That token has expired; get a new one.'))
        return
      }
      let value: string
      try {
        value = await auth.open(principal)
      } catch {
        // The shared store is down (logged once by auth): no session can be recorded.
        html(res, 503, loginPage(ctx(req), "The hub's store cannot be reached; try again in a moment."))
        return
      }
      res.cookie(SESSION_COOKIE, value, {
        httpOnly: true,
        sameSite: 'strict',
        secure: req.secure,
        path: baseOf(req) || '/',
        maxAge: config.sessionTtlMs,
      })
      res.redirect(303, `${baseOf(req)}/`)
    }),
  )

  router.post(
    '/logout',
    guarded(async (req, res) => {
      if (wantsCrossSite(req)) {
        // No Set-Cookie either: clearing the cookie would sign the operator out all the same.
        html(res, 403, loginPage(ctx(req), 'Sign out from the hub itself.'))
        return
      }
      try {
        await auth.end(req)
      } catch {
        // The session is still recorded in the shared store: keep the cookie, so signing
        // out can be tried again, rather than leave a live session behind a cleared one.
        html(
          res,
          503,
          loginPage(
            ctx(req),
            "The hub's store cannot be reached, so the session could not be ended; try again in a moment.",
          ),
        )
        return
      }
      res.clearCookie(SESSION_COOKIE, {
        httpOnly: true,
        sameSite: 'strict',
        secure: req.secure,
        path: baseOf(req) || '/',
      })
      res.redirect(303, `${baseOf(req)}/login`)
    }),
  )

  const principalOf = async (req: Request): Promise<Principal | undefined> =>
    (await auth.session(req)) ?? (req.headers.authorization ? await auth.bearer(req) : undefined)

  // The JSON API: 401 without a valid token, JWT or session, and never a byte of data.
  router.use(
    '/v1',
    guarded(async (req, res, next) => {
      const principal = await principalOf(req)
      if (principal === undefined) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="sqreen-auth hub"')
        json(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <hub token or JWT>' })
        return
      }
      next()
    }),
  )

  /** A page's start: 0 when absent, `undefined` when it is not a whole number from 0. */
  const offsetOf = (value: unknown): number | undefined => {
    if (value === undefined) return 0
    const n = typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN
    return Number.isSafeInteger(n) ? n : undefined
  }

  const limitOf = (value: unknown, fallback: number): number => {
    const n = Number(value)
    return Number.isInteger(n) && n >= 1 ? Math.min(n, 500) : fallback
  }

  router.get(
    '/v1/users',
    guarded(async (req, res) => {
      const sort = req.query.sort === 'rise' ? 'rise' : 'score'
      const offset = offsetOf(req.query.offset)
      if (offset === undefined) {
        json(res, 400, { error: 'bad_offset', message: 'offset must be a whole number from 0' })
        return
      }
      const limit = limitOf(req.query.limit, 50)
      const page = await queries.users(sort, limit, offset)
      json(res, 200, { sort, offset, limit, total: page.total, users: page.users })
    }),
  )
  router.get(
    '/v1/users/:userKey',
    guarded(async (req, res) => {
      const user = await queries.user(String(req.params.userKey))
      if (user === undefined) json(res, 404, { error: 'not_found', message: 'no such user' })
      else json(res, 200, user)
    }),
  )
  router.get('/v1/alerts', (req, res) => {
    json(res, 200, { alerts: queries.alerts(limitOf(req.query.limit, 50)) })
  })
  router.get('/v1/stats', (_req, res) => {
    json(res, 200, { ...diag.snapshot(), users: views.userCount, alerts: views.alertCount })
  })
  router.use('/v1', (_req, res) => {
    json(res, 404, { error: 'not_found' })
  })

  // The dashboard: people without a session are sent to the sign-in page.
  const page =
    (render: (req: Request, res: Response, principal: Principal) => Promise<void>) =>
    async (req: Request, res: Response): Promise<void> => {
      const principal = await auth.session(req)
      if (principal === undefined) {
        secure(res)
        res.redirect(303, `${baseOf(req)}/login`)
        return
      }
      await render(req, res, principal)
    }

  router.get(
    '/',
    guarded(
      page(async (req, res, principal) => {
        const [{ users: riskiest }, { users: rising }] = await Promise.all([
          queries.users('score', 10),
          queries.users('rise', 10),
        ])
        const keys = [...new Set([...riskiest, ...rising].map((u) => u.userKey))]
        html(
          res,
          200,
          overviewPage(ctx(req, principal), {
            riskiest,
            rising,
            sparks: await queries.histories(keys),
            alerts: queries.alerts(20),
            stats: diag.snapshot(),
            users: views.userCount,
          }),
        )
      }),
    ),
  )
  router.get(
    '/user',
    guarded(
      page(async (req, res, principal) => {
        // One key, as a string: `?key=a&key=b` (an array) is no user.
        const key = req.query.key
        const user = typeof key === 'string' ? await queries.user(key) : undefined
        if (user === undefined) html(res, 404, notFoundPage(ctx(req, principal), 'No such user.'))
        else html(res, 200, userPage(ctx(req, principal), user))
      }),
    ),
  )

  /**
   * Last: what a route or a middleware passed on as an error (a malformed `%` escape in
   * `:userKey` makes Express's router throw before any handler, and before the sign-in
   * redirect). Express's own answer would be a page with the stack (outside production)
   * and none of the hub's headers; this one says nothing but the status, to anyone.
   */
  const failed: ErrorRequestHandler = (err: unknown, req, res, next) => {
    if (res.headersSent) {
      // Too late to answer: Express ends the connection.
      next(err)
      return
    }
    const declared = (err as { status?: unknown } | null)?.status
    const status =
      typeof declared === 'number' && Number.isInteger(declared) && declared >= 400 && declared < 500
        ? declared
        : undefined
    if (status === undefined) diag.error('hub_handler_failed', 'a hub request failed', err)
    const answer = status ?? 500
    if (req.path === '/v1' || req.path.startsWith('/v1/')) {
      json(res, answer, { error: answer === 500 ? 'internal' : 'bad_request' })
    } else {
      html(res, answer, errorPage({ base: baseOf(req) }, answer))
    }
  }
  router.use(failed)

  return Object.assign(router, {
    risk: (userKey: string) => engine.risk(userKey),
    stats: () => diag.snapshot(),
    flush: () => ingest.flush(),
    close: () => {
      closing ??= (async () => {
        // Before anything else: the ingest refuses batches from now on, and the ones in
        // progress are scored (or held, then flushed) before the store is released.
        await ingest.close(config.delivery.closeTimeoutMs)
        await dispatcher.close(config.delivery.closeTimeoutMs)
        if (config.store === undefined) await store.close()
      })()
      return closing
    },
  }) as SqreenHub
}
