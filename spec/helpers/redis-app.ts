/**
 * One application process for spec/store.redis.multiprocess.spec.ts, started with
 * `fork()`: a real Express + passport-local app in advanced user context with
 * `sqreenAuth({ store: new RedisStore(...), webhook })` (or its own MemoryStore with
 * STORE=memory, the control), listening on a port of its own. It tells the parent
 * its port over IPC, and answers `GET /risk/:key` (`sqreen.risk`) and `GET /stats`.
 * IPC messages: 'drain' closes the middleware (waits for scoring and deliveries in
 * flight) and answers 'drained'; 'exit' closes the store and exits.
 *
 * Configuration (environment): REDIS_URL, PREFIX, WEBHOOK_URL, WEBHOOK_SECRET,
 * SQREEN_AUTH_SECRET, USERS (JSON: [{ id, email, password }]), STORE ('redis' | 'memory').
 */
import type { AddressInfo } from 'node:net'
import express, { type Request, type Response } from 'express'
import { Passport } from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import { anonEmail, MemoryStore, RedisStore, type Store, sqreenAuth } from '../../lib/index.js'

interface User {
  id: number
  email: string
  password: string
}

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const users = JSON.parse(env('USERS')) as User[]
const byLogin = (login: string): User | undefined => users.find((u) => u.email.toLowerCase() === login.toLowerCase())
const identity = (user: User) => ({ id: user.id, email: anonEmail(user.id, user.email) })

const store: Store =
  process.env.STORE === 'memory' ? new MemoryStore() : new RedisStore({ url: env('REDIS_URL'), prefix: env('PREFIX') })
const authenticator = new Passport()
authenticator.use(
  new LocalStrategy((login, password, done) => {
    const user = byLogin(login)
    done(null, user && user.password === password ? user : false)
  }),
)
const sqreen = sqreenAuth({
  passport: authenticator,
  mode: 'advanced',
  secret: env('SQREEN_AUTH_SECRET'),
  identify: identity,
  // Failed logins map to the account they target, so every process scores the same user.
  identifyLogin: (login) => {
    const user = byLogin(login)
    return user ? identity(user) : undefined
  },
  store,
  webhook: { url: env('WEBHOOK_URL'), secret: env('WEBHOOK_SECRET') },
  delivery: { baseDelay: 50, maxDelay: 200 },
})

const app = express()
app.set('trust proxy', true)
app.use(express.urlencoded({ extended: false }))
app.use(authenticator.initialize())
app.use(sqreen)
app.post('/login', authenticator.authenticate('local', { session: false }), (req: Request, res: Response) => {
  res.json({ id: (req.user as User).id })
})
app.get('/risk/:key', async (req: Request, res: Response) => {
  res.json(await sqreen.risk(String(req.params.key)))
})
app.get('/stats', (_req: Request, res: Response) => {
  res.json(sqreen.stats())
})

const server = app.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port, pid: process.pid })
})

process.on('message', async (message) => {
  if (message === 'drain') {
    await sqreen.close()
    process.send?.('drained')
  } else if (message === 'exit') {
    await sqreen.close()
    await store.close()
    server.closeAllConnections()
    server.close(() => process.exit(0))
  }
})
// The parent going away must not leave this process behind.
process.on('disconnect', () => process.exit(0))
