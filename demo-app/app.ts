import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import express, { type Express, type NextFunction, type Request, type Response } from 'express'
import session from 'express-session'
import helmet from 'helmet'
import passportModule from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import {
  type AuthEvent,
  anonEmail,
  type Logger,
  type Options,
  type SqreenAuth,
  type SqreenHub,
  sqreenAuth,
  sqreenHub,
  type UserContextMode,
} from '../lib/index.js'

/** A user of the demo. Real applications keep a password hash (argon2, scrypt, bcrypt), never the password. */
export interface DemoUser {
  readonly id: number
  readonly email: string
  readonly name: string
  readonly password: string
}

export const DEMO_USERS: readonly DemoUser[] = Object.freeze([
  { id: 1, email: 'alice@example.com', name: 'Alice', password: 'alice-password' },
  { id: 2, email: 'bob@example.org', name: 'Bob', password: 'bob-password' },
])

export interface DemoOptions {
  /** User context mode of the middleware. */
  mode: UserContextMode
  /** Receives the middleware's warnings and the one-line event log (`info`). Defaults to `console`. */
  logger?: Logger
  /** Called with every `AuthEvent`, after it has been printed. */
  onEvent?: (event: AuthEvent) => void
  /**
   * Advanced mode's key for failed-login pseudonyms. Defaults to `SQREEN_AUTH_SECRET`, else a
   * random key generated for this process (pseudonyms then change on every restart).
   */
  secret?: string
  /**
   * Mount a Security Hub at `/hub` and forward this app's events to it, as a real
   * deployment would (signed batches over HTTP), so `npm run demo` shows the whole path.
   * `origin` is where this app listens (`http://127.0.0.1:3000`), `token` the hub's
   * sign-in token. Defaults to none (the app scores its own events).
   */
  hub?: { origin: string; token: string }
}

export interface DemoApp {
  app: Express
  sqreen: SqreenAuth
  /** The Security Hub, when `hub` was given. */
  hub?: SqreenHub
  /** True when advanced mode runs on a key generated for this process. */
  secretGenerated: boolean
}

/** Where the hub is mounted in the demo. */
export const HUB_PATH = '/hub'

// Logins are attacker-controlled and reach the console in automatic mode: anything
// but plain printable ASCII is quoted, so a newline cannot forge a log line.
const show = (value: string | null | undefined): string =>
  value === null || value === undefined || value === ''
    ? '-'
    : /^[\x21-\x7e]+$/.test(value)
      ? value
      : JSON.stringify(value)

/** One compact, readable console line per event. */
export const formatEvent = (event: AuthEvent): string => {
  const parts = [event.at.slice(11, 19), event.type.padEnd(15)]
  if (event.type === 'custom') parts.push(`name=${show(event.name)}`, `severity=${show(event.severity)}`)
  parts.push(`strategy=${show(event.strategy)}`, `user=${show(event.userKey)}`)
  if (event.reason !== undefined) parts.push(`reason=${event.reason}`)
  parts.push(`ip=${show(event.ip)}`)
  return parts.join(' ')
}

const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  )

// No inline scripts (nor styles): a later issue serves a dashboard under a strict CSP.
const page = (title: string, body: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - sqreen-auth demo</title>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${body}
</main>
</body>
</html>
`

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

// Comparing fixed-length digests in constant time: the demo should not teach `===` on secrets.
const passwordMatches = (user: DemoUser, password: string): boolean =>
  timingSafeEqual(sha256(user.password), sha256(password))

const findByEmail = (email: string): DemoUser | undefined => {
  const wanted = email.trim().toLowerCase()
  return DEMO_USERS.find((u) => u.email === wanted)
}

const currentUser = (req: Request): DemoUser | undefined => req.user as DemoUser | undefined

const requireUser = (req: Request, res: Response, next: NextFunction): void => {
  if (currentUser(req)) next()
  else res.redirect('/login')
}

/**
 * The demo application: passport-local with sessions, observed by `sqreenAuth`.
 * Each call builds its own Passport Authenticator (never the singleton), so tests
 * can run several demo apps side by side.
 */
export const createDemoApp = (options: DemoOptions): DemoApp => {
  const { mode } = options
  const logger = options.logger ?? console
  const print = logger.info?.bind(logger) ?? console.log

  let secret = options.secret ?? (process.env.SQREEN_AUTH_SECRET || undefined)
  const secretGenerated = mode === 'advanced' && secret === undefined
  if (secretGenerated) secret = randomBytes(32).toString('base64url')

  const passport = new passportModule.Passport()
  passport.use(
    new LocalStrategy({ usernameField: 'email' }, (email, password, done) => {
      const user = findByEmail(email)
      // One message for both cases, so the form does not reveal which e-mails have accounts.
      if (!user || !passwordMatches(user, password))
        return done(null, false, { message: 'Incorrect e-mail or password.' })
      return done(null, user)
    }),
  )
  passport.serializeUser((user, done) => done(null, (user as DemoUser).id))
  passport.deserializeUser((id: number, done) => done(null, DEMO_USERS.find((u) => u.id === id) ?? false))

  const settings: Partial<Options> = {
    passport,
    mode,
    onEvent: (event) => {
      print(formatEvent(event))
      options.onEvent?.(event)
    },
  }
  if (options.logger) settings.logger = options.logger
  // The forwarder signs with a key made for this process; the hub (same process) holds it.
  const forwardKey = randomBytes(48).toString('base64url')
  if (options.hub) {
    // Scored once, centrally, by the hub: the app only captures and forwards.
    settings.scoring = false
    settings.forward = { url: `${options.hub.origin}${HUB_PATH}/v1/events`, key: forwardKey, flushInterval: 500 }
  }
  if (mode === 'advanced') {
    // Only the id and an anonymised e-mail (its domain) cross the identity boundary.
    settings.identify = (user: DemoUser) => ({ id: user.id, email: anonEmail(user.id, user.email) })
    settings.secret = secret
  }
  const sqreen = sqreenAuth(settings)

  const hub = options.hub
    ? sqreenHub({ key: forwardKey, token: options.hub.token, ...(options.logger ? { logger: options.logger } : {}) })
    : undefined

  const app = express()
  app.disable('x-powered-by')
  // Demo only: trust X-Forwarded-For from this machine, so `npm run demo:attack` can play
  // attackers at several addresses. Never trust a header your proxy does not set.
  if (hub) app.set('trust proxy', 'loopback')
  // The hub first, under helmet's default headers (a strict Content-Security-Policy among
  // them): it has its own sign-in and needs neither the app's session nor its Passport.
  if (hub) app.use(HUB_PATH, helmet(), hub)
  app.use(express.urlencoded({ extended: false }))
  app.use(
    session({
      // WARNING: express-session's default MemoryStore leaks memory and is not shared
      // between processes. It is fine for this demo; use a real store (Redis, a database)
      // in production. The random secret also logs everyone out on restart.
      secret: randomBytes(32).toString('hex'),
      name: 'demo.sid',
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax' },
    }),
  )
  app.use(passport.initialize())
  app.use(passport.session())
  app.use(sqreen)

  app.get('/login', (req, res) => {
    const store = req.session as { messages?: string[] }
    const message = store.messages?.at(-1)
    delete store.messages
    const alert = message === undefined ? '' : `<p role="alert">${escapeHtml(message)}</p>\n`
    res.type('html').send(
      page(
        'Sign in',
        `${alert}<form method="post" action="/login">
<p><label for="email">E-mail</label><br>
<input id="email" name="email" type="email" autocomplete="username" required></p>
<p><label for="password">Password</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Demo accounts: ${DEMO_USERS.map((u) => `${escapeHtml(u.email)} / ${escapeHtml(u.password)}`).join(', ')}.
Login events are printed in the server's console.</p>`,
      ),
    )
  })

  app.post(
    '/login',
    passport.authenticate('local', { successRedirect: '/', failureRedirect: '/login', failureMessage: true }),
  )

  app.get('/', requireUser, (req, res) => {
    const user = currentUser(req) as DemoUser
    res.set('Cache-Control', 'no-store')
    res.type('html').send(
      page(
        `Hello, ${user.name}`,
        `<p>Signed in as <strong>${escapeHtml(user.email)}</strong> (user id ${user.id}).</p>
<p>User context mode: <strong>${mode}</strong>.</p>
<p><a href="/attack-me">Simulate an attack</a>: the app reports a high-severity
<code>sql_injection</code> event against your account.</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>`,
      ),
    )
  })

  app.get('/attack-me', requireUser, (req, res) => {
    // An application-detected attack (here: pretend a WAF rule matched), counted against the signed-in user.
    sqreen.trackEvent(req, 'sql_injection', { severity: 'high' })
    res.set('Cache-Control', 'no-store')
    res.type('html').send(
      page(
        'Attack reported',
        `<p role="status">A high-severity <code>sql_injection</code> event was reported for your account.
See the server's console.</p>
<p><a href="/">Back</a></p>`,
      ),
    )
  })

  // POST, not GET, so a link or prefetch cannot sign the user out; the SameSite cookie
  // keeps other sites from posting here.
  app.post('/logout', (req, res, next) => {
    req.logout((err) => (err ? next(err) : res.redirect('/login')))
  })

  return hub ? { app, sqreen, hub, secretGenerated } : { app, sqreen, secretGenerated }
}
