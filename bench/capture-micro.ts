/**
 * The direct CPU cost of capturing one login, without HTTP: the same
 * `passport.authenticate('local', { session: false })` middleware called on Express
 * request / response objects, on an Authenticator observed by sqreen-auth and on one
 * that is not, in one process, interleaved rounds, medians. It isolates our own code
 * (hooks, login extraction, `req.ip`, the identity boundary, the event, `onEvent`) from
 * the network stack, whose noise on a small shared machine is larger than the cost
 * being measured. What it cannot show: garbage-collection effects of real request
 * objects (see bench/capture.ts for the whole-server measurement).
 *
 *   npm run build && node --import tsx bench/capture-micro.ts            # 9 rounds of 40,000 logins
 *   npm run build && node --import tsx bench/capture-micro.ts --smoke
 *   SCORING=on ...                                                        # with the risk engine
 *   npm run build && node --import tsx bench/capture-micro.ts --cold     # caches flushed before each login
 *   ... --cold --builds <dir>,<dir>   # also other builds (copies of dist/ inside the project), same run
 *
 * `--cold`: in a server, a login runs between other requests that have evicted its code
 * and data from the CPU's caches, and on this VM a cold run of the same code costs about
 * ten times a warm one (2026-12-06: Passport's own authenticate 2 µs warm, 17-40 µs
 * cold). The default mode runs logins back to back, warm, and so shows a tenth of what a
 * server pays. `--cold` reads 8 MB of memory before each login, and runs the subjects
 * one login each in turn, in a shuffled order, so that all see the same machine state;
 * each login is timed with the turn of the event loop that delivers its event.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'
import express from 'express'
import passport from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'

type Lib = typeof import('../lib/index.js')
type SqreenAuth = Lib['sqreenAuth']
const build = async (dir: string): Promise<SqreenAuth> =>
  ((await import(new URL(`${dir.replace(/\/?$/, '/')}index.js`, `file://${process.cwd()}/`).href)) as Lib).sqreenAuth
const sqreenAuth = await build(new URL('../dist/', import.meta.url).pathname)

const smoke = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1'
const scoring = process.env.SCORING === 'on'
const USERS = new Map([['alice', 'correct horse']])
const socket = { remoteAddress: '127.0.0.1', encrypted: false }

interface Subject {
  login(ok: boolean): void
  readonly events: () => number
}

const subject = (observed: boolean, sqreenAuth: SqreenAuth): Subject => {
  const auth = new passport.Passport()
  auth.use(
    new LocalStrategy((username, password, done) => {
      if (USERS.get(username) === password) done(null, { id: username, username })
      else done(null, false)
    }),
  )
  const app = express()
  let events = 0
  const sqreen = observed
    ? sqreenAuth({
        passport: auth,
        scoring,
        // Alerts fire (one user fails half the time); with no channel they would be logged.
        logger: { warn: () => {}, info: () => {}, error: (line: string) => console.error(line) },
        onEvent: () => {
          events++
        },
      })
    : undefined
  const init = auth.initialize()
  const authenticate = auth.authenticate('local', { session: false })
  const next = (): void => {}
  return {
    events: () => events,
    login(ok) {
      const req = Object.create(app.request) as Record<string, unknown>
      req.headers = { 'user-agent': 'bench', 'content-type': 'application/x-www-form-urlencoded' }
      req.method = 'POST'
      req.url = '/login'
      req.socket = socket
      req.connection = socket
      req.body = { username: 'alice', password: ok ? 'correct horse' : 'wrong' }
      // A response that records its end, as the real one does (capture waits for it).
      const res = Object.create(app.response, {
        writableEnded: { value: false, writable: true },
        destroyed: { value: false, writable: true },
      }) as Record<string, unknown>
      res.statusCode = 200
      res.setHeader = () => {}
      res.end = () => {
        res.writableEnded = true
      }
      req.res = res
      res.req = req
      const r = req as unknown as express.Request
      const s = res as unknown as express.Response
      init(r, s, next)
      if (sqreen) sqreen(r, s, next)
      authenticate(r, s, () => (res.end as () => void)())
    },
  }
}

/**
 * `--cold`: µs per login (and its event's delivery) of each subject, medians over logins
 * taken one per subject in turn, each after reading `THRASH` (more than this machine's
 * caches) so that it starts cold.
 */
const coldRun = async (subjects: readonly (readonly [string, Subject])[], logins: number): Promise<void> => {
  const thrash = new Float64Array((8 * 1024 * 1024) / 8)
  let sink = 0
  const evict = (): void => {
    for (let i = 0; i < thrash.length; i += 8) sink += thrash[i] as number
  }
  const times = subjects.map((): number[] => [])
  const warmUp = Math.min(200, logins)
  const order = subjects.map((_, i) => i)
  for (let n = 0; n < warmUp + logins; n++) {
    // A shuffled order each time (Fisher-Yates), so no subject always follows another.
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      ;[order[i], order[j]] = [order[j] as number, order[i] as number]
    }
    for (const k of order) {
      evict()
      const start = process.hrtime.bigint()
      ;(subjects[k] as readonly [string, Subject])[1].login(n % 2 === 0)
      await nextTurn()
      const micros = Number(process.hrtime.bigint() - start) / 1000
      if (n >= warmUp) times[k]?.push(micros)
    }
  }
  if (sink === -1) console.log(sink)
  const none = median(times[0] as number[])
  console.log(`| subject, caches flushed before each login (median of ${logins}) | µs per login | cost |`)
  console.log('| --- | ---: | ---: |')
  subjects.forEach(([name, s], k) => {
    const m = median(times[k] as number[])
    console.log(`| ${name} | ${m.toFixed(2)} | ${k === 0 ? '-' : `+${(m - none).toFixed(2)}`} |`)
    // dist/ must deliver every event; another build may be a copy with a part taken out.
    if (k > 0 && s.events() !== warmUp + logins) {
      const missing = `${name}: expected ${warmUp + logins} events, got ${s.events()}`
      if (k === 1) throw new Error(missing)
      console.log(`  (${missing})`)
    }
  })
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number

if (process.argv.includes('--cold')) {
  const at = process.argv.indexOf('--builds')
  const others = at === -1 ? [] : (process.argv[at + 1] ?? '').split(',').filter(Boolean)
  const subjects: [string, Subject][] = [
    ['without sqreen-auth', subject(false, sqreenAuth)],
    [`with sqreen-auth (dist/, scoring ${scoring ? 'on' : 'off'})`, subject(true, sqreenAuth)],
  ]
  for (const dir of others) subjects.push([dir, subject(true, await build(dir))])
  await coldRun(subjects, smoke ? 200 : 3_000)
  process.exit(0)
}

/** µs per login, the events of each batch flushed (on the next turn) inside the timing. */
const round = async (s: Subject, logins: number): Promise<number> => {
  const start = process.hrtime.bigint()
  for (let i = 0; i < logins; i += 100) {
    for (let j = 0; j < 100; j++) s.login((i + j) % 2 === 0)
    await nextTurn()
  }
  return Number(process.hrtime.bigint() - start) / logins / 1000
}

const baseline = subject(false, sqreenAuth)
const candidate = subject(true, sqreenAuth)
const rounds = smoke ? 1 : 9
const logins = smoke ? 2_000 : 40_000
for (let w = 0; w < (smoke ? 1 : 3); w++) {
  await round(baseline, logins / 2)
  await round(candidate, logins / 2)
}
const b: number[] = []
const c: number[] = []
for (let r = 0; r < rounds; r++) {
  // ABBA order, so a drift of the machine does not always fall on the same side.
  if (r % 2 === 0) {
    b.push(await round(baseline, logins))
    c.push(await round(candidate, logins))
  } else {
    c.push(await round(candidate, logins))
    b.push(await round(baseline, logins))
  }
}
const expected = (rounds + (smoke ? 1 : 3) / 2) * logins
if (candidate.events() !== expected) throw new Error(`expected ${expected} events, got ${candidate.events()}`)
console.log(`| passport.authenticate('local'), in-process (median of ${rounds}) | µs per login |`)
console.log('| --- | ---: |')
console.log(`| without sqreen-auth | ${median(b).toFixed(2)} |`)
console.log(`| with sqreen-auth (scoring ${scoring ? 'on' : 'off'}) | ${median(c).toFixed(2)} |`)
console.log(`| capture cost per login | ${(median(c) - median(b)).toFixed(2)} |`)
