// Child-process entry: one benchmark server, so the load generator (in the parent)
// and the server under test never share an event loop.
//
//   node --import tsx bench/lib/server.ts baseline|candidate [source|dist]
//
// `source` (default) runs lib/ through tsx; `dist` runs the tsc build (npm run build), which
// is what users install and lacks the small helpers tsx adds (e.g. esbuild's `__name` calls
// on every closure created per request).
//
// Talks to the parent over the fork IPC channel: sends { type: 'ready', port } once
// listening, answers { type: 'stats' } with what the app observed, exits on { type: 'close' }.
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { PerformanceObserver } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import express from 'express'
import session from 'express-session'
import passport from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import { type ChildMessage, type ParentMessage, USERS } from './protocol.js'
import { survivorCounter } from './survivors.js'

const mode = process.argv[2]
if (mode !== 'baseline' && mode !== 'candidate' && mode !== 'forward') {
  throw new Error(`usage: server.ts baseline|candidate|forward (got ${String(mode)})`)
}
const target = process.argv[3] ?? 'source'
if (target !== 'source' && target !== 'dist') throw new Error(`unknown target "${target}": source or dist`)
if (typeof process.send !== 'function') throw new Error('server.ts must be started with child_process.fork')
const send = (message: ChildMessage): void => void process.send?.(message)

type Lib = typeof import('../../lib/index.js')
// A URL held in a variable, so TypeScript does not require a build to type-check this file.
// BENCH_DIST=<dir>: another build (a copy of dist/ with a change in it), for a same-run A/B.
const DIST = process.env.BENCH_DIST
  ? pathToFileURL(resolve(process.env.BENCH_DIST, 'index.js')).href
  : new URL('../../dist/index.js', import.meta.url).href
const load = async (): Promise<Lib> => {
  if (target === 'source') return import('../../lib/index.js')
  try {
    return (await import(DIST)) as Lib
  } catch (err) {
    throw new Error(`cannot load ${DIST} (run \`npm run build\` first): ${String(err)}`)
  }
}
const { sqreenAuth } = await load()

const events: Record<string, number> = {}
const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1
}

// A fresh Authenticator per process (not the singleton), exactly as an app would
// build it; the two modes differ only by the sqreenAuth() lines below.
const auth = new passport.Passport()
auth.use(
  new LocalStrategy((username, password, done) => {
    const expected = USERS.get(username)
    if (expected !== undefined && expected === password) done(null, { id: username, username })
    else done(null, false)
  }),
)

// BENCH_APP=session: logins into an express-session session (its memory store), restored by
// passport.session() on every request, as most passport-local apps do (bench/capture.ts --app).
const withSession = process.env.BENCH_APP === 'session'
auth.serializeUser((user, done) => done(null, (user as { id: string }).id))
auth.deserializeUser((id: string, done) => done(null, { id, username: id }))

const app = express()
app.disable('x-powered-by')
app.use(express.urlencoded({ extended: false }))
if (withSession) {
  app.use(session({ secret: 'bench-session-secret-0123456789', resave: false, saveUninitialized: false }))
}
app.use(auth.initialize())
if (withSession) app.use(auth.session())
// onEvent only counts (a property increment, as cheap as `() => {}`), so the parent can
// check that the candidate really captured every login it measured.
// BENCH_SCORING=off measures capture alone (as when a Security Hub scores centrally).
const scoring = process.env.BENCH_SCORING !== 'off'
// `forward` adds only the forwarder, to the hub at BENCH_FORWARD_URL (HS256, BENCH_FORWARD_KEY).
const forward =
  mode === 'forward'
    ? { forward: { url: process.env.BENCH_FORWARD_URL ?? '', key: process.env.BENCH_FORWARD_KEY ?? '' } }
    : {}
// BENCH_AA=1 (bench/capture.ts --aa): every server is the baseline, to measure the method's own error.
const sqreen =
  mode === 'baseline' || process.env.BENCH_AA === '1'
    ? undefined
    : sqreenAuth({ passport: auth, scoring, onEvent: (e) => bump(events, e.type), ...forward })
if (sqreen) app.use(sqreen)

app.get('/hello', (_req, res) => {
  res.send('hello')
})
app.post('/login', auth.authenticate('local', { session: withSession }), (_req, res) => {
  res.send('welcome')
})

// Collection pauses, so a run can tell its allocation's cost apart from its own code's.
let gcMillis = 0
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMillis += entry.duration
}).observe({ entryTypes: ['gc'] })

// What survives young collections (see survivors.ts).
const survivors = survivorCounter()

const server = app.listen(0, '127.0.0.1', () => {
  send({ type: 'ready', port: (server.address() as AddressInfo).port })
})

process.on('message', (message: ParentMessage) => {
  if (message.type === 'stats') {
    const cpu = process.cpuUsage()
    send({
      type: 'stats',
      mode,
      events: { ...events },
      cpuMicros: cpu.user + cpu.system,
      gcMillis,
      survivedBytes: survivors.total(),
    })
  } else if (message.type === 'close') {
    server.closeAllConnections()
    server.close(() => {
      void (sqreen ? sqreen.close() : Promise.resolve()).then(() => process.exit(0))
    })
  }
})
process.on('disconnect', () => process.exit(0))
