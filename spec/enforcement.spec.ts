/**
 * Opt-in enforcement over real HTTP on both Express/Passport pairs: with
 * `block: { above }` a user whose standing score is above the level cannot log
 * in (403, JSON or HTML by Accept), with `scope: 'all'` none of that user's
 * requests go through, `sqreen.isBlocked(req)` answers for the app, and
 * without `block` nothing is ever refused.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Express, NextFunction, Request, Response } from 'express'
import session from 'express-session'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, type Options, RedisStore, type Severity, type SqreenAuth, sqreenAuth } from '../lib/index.js'
import { type Authenticator, EventLog, MemoryLogger, type Variant, variants } from './helpers/apps.js'
import { USER_AGENT, USERS, type User, userByLogin, waitUntil } from './helpers/receivers.js'
import { dropKeys, inspector, REDIS_URL, testPrefix } from './helpers/redis.js'

const [jane, bob] = [USERS[0]!, USERS[1]!]

interface App {
  app: Express
  sqreen: SqreenAuth
  log: EventLog
  logger: MemoryLogger
}

/**
 * A session app in the documented order: session, passport.initialize(),
 * passport.session(), then sqreen (so it sees the session's user), then routes.
 * `sqreenFirst` mounts sqreen before passport.session() instead.
 */
const build = (variant: Variant, options: Partial<Options>, sqreenFirst = false): App => {
  const app = variant.express() as unknown as Express
  const passport = new variant.passport.Passport() as Authenticator
  const log = new EventLog()
  const logger = new MemoryLogger()
  const sqreen = sqreenAuth({ passport, onEvent: log.push, logger, ...options })
  app.use(variant.express.json())
  app.use(session({ secret: 'enforcement-spec-session', resave: false, saveUninitialized: false }))
  app.use(passport.initialize())
  if (sqreenFirst) app.use(sqreen)
  app.use(passport.session())
  if (!sqreenFirst) app.use(sqreen)
  passport.use(
    new LocalStrategy((login, password, done) => {
      const user = userByLogin(login)
      done(null, user && user.password === password ? user : false)
    }),
  )
  passport.serializeUser((user, done) => done(null, (user as User).id))
  passport.deserializeUser((id: number, done) => done(null, USERS.find((u) => u.id === id) ?? false))
  app.post('/login', passport.authenticate('local'), (req: Request, res: Response) => {
    res.json({ id: (req.user as User).id })
  })
  app.get('/me', (req: Request, res: Response) => {
    if (!req.user) return void res.status(401).json({ error: 'not logged in' })
    res.json({ id: (req.user as User).id })
  })
  app.get('/blocked', (req: Request, res: Response) => {
    res.json({ blocked: sqreen.isBlocked(req) })
  })
  app.post('/logout', (req: Request, res: Response, next: NextFunction) => {
    req.logout((err) => (err ? next(err) : res.json({ ok: true })))
  })
  // The app's own detection, against `{ id }` or, without it, the logged-in user.
  app.post('/report', (req: Request, res: Response) => {
    const { id, severity } = req.body as { id?: number; severity: Severity }
    sqreen.trackEvent(req, 'sql_injection', id === undefined ? { severity } : { severity, identity: { id } })
    res.status(204).end()
  })
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: err.name })
  })
  return { app, sqreen, log, logger }
}

const asRequest = (user: User | undefined): Request => ({ user, headers: {} }) as unknown as Request

/** Reports attacks against `user` (the app's own detection) and waits for their events. */
const raise = async (a: App, user: User, severities: Severity[]): Promise<void> => {
  const before = a.log.events.length
  for (const severity of severities) {
    await request(a.app).post('/report').send({ id: user.id, severity }).expect(204)
  }
  await a.log.waitFor(before + severities.length)
}

/** Jane above a level of 30 (two critical detections of the app's), and the block list knows it. */
const blockJane = async (a: App): Promise<void> => {
  await raise(a, jane, ['critical', 'critical'])
  await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane to be blocked')
}

/** Jane logged in (a session), then blocked by two critical detections reported from that session. */
const blockedSession = async (a: App): Promise<ReturnType<typeof request.agent>> => {
  const janeAgent = request.agent(a.app)
  await logIn(janeAgent, jane).expect(200)
  await janeAgent.post('/report').send({ severity: 'critical' }).expect(204)
  await janeAgent.post('/report').send({ severity: 'critical' }).expect(204)
  await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane to be blocked')
  return janeAgent
}

/**
 * A brute force on jane's login before any success of hers (scored under the login's key):
 * `guesses` wrong passwords (401 until the login is blocked, then 403), until its score passes `level`.
 */
const guessJanesLogin = async (a: App, guesses: number, level: number): Promise<void> => {
  for (let i = 0; i < guesses; i++) await logIn(a, { ...jane, password: `guess-${i}` })
  await eventually(async () => (await a.sqreen.risk('login:jdoe-private')).score > level, `the login to pass ${level}`)
}

/** Polls an async condition (the engine scores after the event is emitted). */
const eventually = async (condition: () => Promise<boolean>, what: string, ms = 3000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

const logIn = (a: App | ReturnType<typeof request.agent>, user: User, accept = 'application/json') =>
  (a instanceof request.agent ? a : request((a as App).app))
    .post('/login')
    .set('Accept', accept)
    .set('User-Agent', USER_AGENT)
    .send({ username: user.username, password: user.password })

for (const variant of variants) {
  describe(`enforcement (${variant.name})`, () => {
    it('block: { above: 30 } refuses the login of a user above it with a 403, JSON or HTML by Accept', async () => {
      const a = build(variant, { block: { above: 30 } })
      try {
        await blockJane(a)

        const json = await logIn(a, jane, 'application/json')
        assert.equal(json.status, 403)
        assert.match(String(json.headers['content-type']), /^application\/json/)
        assert.equal(json.body.code, 'SQREEN_USER_BLOCKED')
        assert.equal(json.headers['set-cookie'], undefined, 'no session was opened')

        const html = await logIn(a, jane, 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8')
        assert.equal(html.status, 403)
        assert.match(String(html.headers['content-type']), /^text\/html/)
        assert.match(html.text, /Access refused/)
        assert.doesNotMatch(html.text, /jdoe|jane/i)

        // Bob is not above the level: his login goes through.
        assert.equal((await logIn(a, bob)).status, 200)
        const logins = (await a.log.waitFor(5)).filter((e) => e.type.startsWith('login.'))
        assert.deepEqual(
          logins.map((e: AuthEvent) => [e.type, e.reason ?? null]),
          [
            ['login.failed', 'blocked'],
            ['login.failed', 'blocked'],
            ['login.succeeded', null],
          ],
        )
      } finally {
        await a.sqreen.close()
      }
    })

    it('a refused login is recorded against the user whose credentials were right', async () => {
      const a = build(variant, { block: { above: 30 } })
      try {
        await blockJane(a)
        assert.equal((await logIn(a, jane)).status, 403)
        const [refused] = (await a.log.waitFor(3)).filter((e) => e.type.startsWith('login.'))
        assert.equal(refused?.reason, 'blocked')
        // The account is known (right password): the event names it, not just the login typed.
        assert.equal(refused?.userKey, 'id:1')
        assert.equal(refused?.identity.id, 1)
      } finally {
        await a.sqreen.close()
      }
    })

    it('unblock() lifts a block at once; only points gained afterwards can block the user again', async () => {
      const a = build(variant, { block: { above: 30 }, trigger: false })
      try {
        await blockJane(a)
        assert.equal((await logIn(a, jane)).status, 403)
        assert.equal(await a.sqreen.unblock('id:1'), true)
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
        assert.equal((await logIn(a, jane)).status, 200, 'let in at once, 40 points or not')
        // 10 more points: 50 in all, 10 of them new, under the level.
        await raise(a, jane, ['high'])
        await eventually(async () => (await a.sqreen.risk('id:1')).score === 50, 'jane at 50')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
        assert.equal((await logIn(a, jane)).status, 200)
        // 40 more: 50 points gained since the unblock, above the level.
        await raise(a, jane, ['critical', 'critical'])
        await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane to be blocked again')
        assert.equal((await logIn(a, jane)).status, 403)
        assert.equal(await a.sqreen.unblock('id:2'), false, 'bob was never blocked')
        assert.equal(a.sqreen.stats().counters.unblocked, 1)
      } finally {
        await a.sqreen.close()
      }
    })

    it('"above" is strict: a user exactly at the level still logs in', async () => {
      const a = build(variant, { block: { above: 30 }, trigger: false })
      try {
        await raise(a, bob, ['high', 'high', 'high'])
        await eventually(async () => (await a.sqreen.risk('id:2')).score === 30, 'bob to reach 30')
        assert.equal(a.sqreen.isBlocked(asRequest(bob)), false)
        assert.equal((await logIn(a, bob)).status, 200)
      } finally {
        await a.sqreen.close()
      }
    })

    it('a block ends when the standing score has decayed to the level, with no new event and no restart', async () => {
      // 40 points, half-life 1 h: above 30 until log2(40/30) h = 24.9 min later.
      let now = Date.parse('2026-12-04T12:00:00Z')
      const a = build(variant, { block: { above: 30 }, trigger: false, halfLife: '1h', clock: () => now })
      try {
        await blockJane(a)
        now += 20 * 60_000
        assert.equal((await a.sqreen.risk('id:1')).score > 30, true, 'still above the level after 20 min')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), true)
        assert.equal((await logIn(a, jane)).status, 403, 'the refused login scores nothing')
        now += 10 * 60_000
        assert.equal((await a.sqreen.risk('id:1')).score <= 30, true, 'decayed to the level after 30 min')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
        assert.equal((await logIn(a, jane)).status, 200, 'jane logs in again')
      } finally {
        await a.sqreen.close()
      }
    })

    it('a block lasts as long as the points above maxScore keep the score above the level', async () => {
      // 10 x 20 = 200 points, shown as 100 (maxScore). Half-life 1 h: above 30 for log2(200/30) = 2.74 h.
      let now = Date.parse('2026-12-04T12:00:00Z')
      const a = build(variant, { block: { above: 30 }, trigger: false, halfLife: '1h', clock: () => now })
      try {
        await raise(a, jane, Array(10).fill('critical'))
        await eventually(async () => (await a.sqreen.risk('id:1')).score === 100, 'jane to reach the cap')
        now += 2 * 3_600_000
        assert.equal((await a.sqreen.risk('id:1')).score, 50, 'two half-lives later: 200 -> 50, not 100 -> 25')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), true)
        now += 45 * 60_000
        assert.ok((await a.sqreen.risk('id:1')).score <= 30)
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
      } finally {
        await a.sqreen.close()
      }
    })

    it('isBlocked(req) is true for a blocked user only', async () => {
      const a = build(variant, { block: { above: 30 } })
      try {
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false, 'before any attack')
        await blockJane(a)
        assert.equal(a.sqreen.isBlocked(asRequest(bob)), false)
        assert.equal(a.sqreen.isBlocked(asRequest(undefined)), false, 'anonymous requests')
        // Through a real request: bob's session asks the app.
        const agent = request.agent(a.app)
        await logIn(agent, bob).expect(200)
        await agent.get('/blocked').expect(200, { blocked: false })
      } finally {
        await a.sqreen.close()
      }
    })

    it("scope: 'all' refuses every request of a logged-in user once above the level", async () => {
      const a = build(variant, { block: { above: 30, scope: 'all' } })
      try {
        const janeAgent = request.agent(a.app)
        const bobAgent = request.agent(a.app)
        await logIn(janeAgent, jane).expect(200)
        await logIn(bobAgent, bob).expect(200)
        await janeAgent.get('/me').expect(200, { id: 1 })
        // Reported against whoever is logged in: jane's own session.
        await janeAgent.post('/report').send({ severity: 'critical' }).expect(204)
        await janeAgent.post('/report').send({ severity: 'critical' }).expect(204)
        await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane to be blocked')

        const refused = await janeAgent.get('/me').set('Accept', 'application/json')
        assert.equal(refused.status, 403)
        assert.equal(refused.body.code, 'SQREEN_USER_BLOCKED')
        const page = await janeAgent.get('/me').set('Accept', 'text/html')
        assert.equal(page.status, 403)
        assert.match(page.text, /Access refused/)
        await janeAgent.get('/blocked').expect(403)
        // Others are untouched.
        await bobAgent.get('/me').expect(200, { id: 2 })
        await request(a.app).get('/me').expect(401)
      } finally {
        await a.sqreen.close()
      }
    })

    for (const sqreenFirst of [false, true]) {
      it(`scope: 'all' with block.skip lets a blocked session log out, and nothing else (sqreen ${sqreenFirst ? 'before' : 'after'} passport.session())`, async () => {
        const a = build(
          variant,
          { block: { above: 30, scope: 'all', skip: (req) => req.method === 'POST' && req.path === '/logout' } },
          sqreenFirst,
        )
        try {
          const janeAgent = await blockedSession(a)
          await janeAgent.get('/me').expect(403)
          // Only what skip names: the same path with another method is refused.
          await janeAgent
            .get('/logout')
            .set('Accept', 'application/json')
            .expect(403, /SQREEN_USER_BLOCKED/)
          await janeAgent.post('/logout').expect(200, { ok: true })
          await janeAgent.get('/me').expect(401)
        } finally {
          await a.sqreen.close()
        }
      })
    }

    it('a block.skip that throws lets the request through (blocking fails open) and says so once', async () => {
      const a = build(variant, {
        block: {
          above: 30,
          scope: 'all',
          skip: () => {
            throw new Error('skip broke')
          },
        },
      })
      try {
        const janeAgent = await blockedSession(a)
        await janeAgent.get('/me').expect(200, { id: 1 })
        await janeAgent.get('/me').expect(200, { id: 1 })
        assert.equal(a.logger.lines.filter((l) => l.includes('block_skip_threw')).length, 1, a.logger.lines.join('\n'))
      } finally {
        await a.sqreen.close()
      }
    })

    it("scope: 'all' still holds when sqreen is mounted between passport.initialize() and passport.session()", async () => {
      const a = build(variant, { block: { above: 30, scope: 'all' } }, true)
      try {
        const janeAgent = request.agent(a.app)
        await logIn(janeAgent, jane).expect(200)
        await blockJane(a)
        const res = await janeAgent.get('/me').set('Accept', 'application/json')
        assert.equal(res.status, 403, `jane's session request answered ${res.status}`)
      } finally {
        await a.sqreen.close()
      }
    })

    it('the right password after a brute force is refused on the first login since start (the login not yet linked to its user)', async () => {
      const a = build(variant, { block: { above: 10 } })
      try {
        // Links between a login and its user are made by a success and kept in memory, so
        // after a restart a brute force on jane's login is scored under the login's key.
        for (let i = 0; i < 10; i++) await logIn(a, { ...jane, password: `guess-${i}` }).expect(401)
        await eventually(async () => (await a.sqreen.risk('login:jdoe-private')).score > 10, 'the login to pass 10')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false, "not jane's own key yet")
        const res = await logIn(a, jane)
        assert.equal(res.status, 403)
        assert.equal(res.body.code, 'SQREEN_USER_BLOCKED')
        const last = (await a.log.waitFor(11)).at(-1)
        assert.deepEqual([last?.type, last?.reason, last?.userKey], ['login.failed', 'blocked', 'id:1'])
        // Bob, whose login was never attacked, logs in.
        assert.equal((await logIn(a, bob)).status, 200)
      } finally {
        await a.sqreen.close()
      }
    })

    it("unblocking a guessed login lets its owner in, and the merged failures stay forgiven on the owner's account", async () => {
      const a = build(variant, { block: { above: 15 } })
      try {
        // A brute force on jane's login before any success of hers: scored under the login's key
        // (401 until the login is blocked, then 403 to every guess).
        await guessJanesLogin(a, 12, 15)
        assert.equal((await logIn(a, jane)).status, 403)
        // The operator, told by the alert, lifts the block of the key it names.
        assert.equal(await a.sqreen.unblock('login:jdoe-private'), true)
        assert.equal((await logIn(a, jane)).status, 200, 'jane logs in')
        // Her success merged the login's failures into her account (and scored the takeover
        // check): the forgiven points came along, so she is not blocked by them.
        await eventually(async () => (await a.sqreen.risk('id:1')).score > 15, 'the failures merged into id:1')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
        assert.equal((await logIn(a, jane)).status, 200, 'and again')
      } finally {
        await a.sqreen.close()
      }
    })

    it("the merge carries only the login's forgiven points and what the success scored; the account's own still count", async () => {
      const a = build(variant, { block: { above: 20 } })
      try {
        await guessJanesLogin(a, 15, 20)
        assert.equal(await a.sqreen.unblock('login:jdoe-private'), true)
        // The app's own detections on jane's account: 15 points, under the level.
        await raise(a, jane, ['high', 'medium'])
        await eventually(async () => (await a.sqreen.risk('id:1')).score >= 15, 'jane at 15')
        assert.equal((await logIn(a, jane)).status, 200)
        await eventually(async () => (await a.sqreen.risk('id:1')).score > 50, 'the failures merged into id:1')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false, '15 of her own, the rest forgiven')
        // 10 more of her own: 25, above the level.
        await raise(a, jane, ['high'])
        await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), "jane blocked by her account's own points")
      } finally {
        await a.sqreen.close()
      }
    })

    it('forgiven points decay as the others do: after a half-life, half of them no longer excuse new ones', async () => {
      let now = Date.parse('2026-12-04T12:00:00Z')
      const a = build(variant, { block: { above: 30 }, trigger: false, halfLife: '1h', clock: () => now })
      try {
        await blockJane(a)
        assert.equal(await a.sqreen.unblock('id:1'), true)
        now += 3_600_000
        // 20 old points left, 20 forgiven; 35 new: 55 in all, 35 beyond what is still forgiven.
        await raise(a, jane, ['critical', 'high', 'medium'])
        await eventually(async () => (await a.sqreen.risk('id:1')).score === 55, 'jane at 55')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), true)
      } finally {
        await a.sqreen.close()
      }
    })

    it("forgiveness leaves with the entries it was given for, when the ledger's retention lets them go", async () => {
      let now = Date.parse('2026-12-04T12:00:00Z')
      const a = build(variant, { block: { above: 40 }, trigger: false, halfLife: '60d', clock: () => now })
      try {
        await raise(a, jane, ['critical', 'critical', 'critical'])
        await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane to be blocked')
        assert.equal(await a.sqreen.unblock('id:1'), true)
        // 31 days on, the 60 points have left the ledger (30 days), and their forgiveness too.
        now += 31 * 86_400_000
        await raise(a, jane, ['critical', 'critical', 'medium'])
        await eventually(async () => (await a.sqreen.risk('id:1')).score === 45, 'jane at 45, her old points gone')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), true)
      } finally {
        await a.sqreen.close()
      }
    })

    it('an unblock holds until the next wrong password for that user: guessing does not go on unchecked', async () => {
      const a = build(variant, { block: { above: 15 } })
      try {
        await guessJanesLogin(a, 12, 15)
        assert.equal(await a.sqreen.unblock('login:jdoe-private'), true)
        // The guesser goes on: the day's brute-force marks were spent, so new guesses score
        // little, but the first one ends the forgiveness and the block is back.
        const before = a.log.events.length
        await logIn(a, { ...jane, password: 'guess-again' }).expect(401)
        await a.log.waitFor(before + 1)
        await eventually(
          async () => (await logIn(a, { ...jane, password: 'guess-more' })).status === 403,
          'the block back',
        )
      } finally {
        await a.sqreen.close()
      }
    })

    it('a block set after an unblock still ends when the ledger lets its entries go', async () => {
      let now = Date.parse('2026-12-04T12:00:00Z')
      const a = build(variant, { block: { above: 20 }, trigger: false, halfLife: '60d', clock: () => now })
      try {
        await blockJane(a)
        assert.equal(await a.sqreen.unblock('id:1'), true)
        await raise(a, jane, Array(5).fill('critical'))
        await waitUntil(() => a.sqreen.isBlocked(asRequest(jane)), 'jane blocked by 100 new points')
        now += 31 * 86_400_000
        assert.equal((await a.sqreen.risk('id:1')).score, 0, 'every entry has left the ledger')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
      } finally {
        await a.sqreen.close()
      }
    })

    it('once every block has ended, logged-in requests no longer identify their user for the block check', async () => {
      let now = Date.parse('2026-12-04T12:00:00Z')
      let identified = 0
      const a = build(variant, {
        block: { above: 30, scope: 'all' },
        trigger: false,
        halfLife: '1h',
        clock: () => now,
        identify: (u: User) => {
          identified++
          return { id: u.id }
        },
      })
      try {
        await blockedSession(a)
        // An hour on, jane's block has ended, but nothing has asked about her since: her entry
        // is still in the list (entries go at the next sweep, or when their user is checked).
        now += 3_600_000
        const bobAgent = request.agent(a.app)
        const before = a.log.events.length
        await logIn(bobAgent, bob).expect(200)
        // Bob's login event is identified once it is emitted, after his response.
        await a.log.waitFor(before + 1)
        identified = 0
        for (let i = 0; i < 10; i++) await bobAgent.get('/me').expect(200)
        assert.equal(identified, 0)
      } finally {
        await a.sqreen.close()
      }
    })

    it('block.skip: a promise is no answer (the request is let through, said once, and its rejection never ends the process); a truthy value skips', async () => {
      // (Typed as the option wants: applications in JavaScript pass such functions all the same.)
      const asyncSkips = [async () => Promise.reject(new Error('async skip')), async () => true] as unknown as ((
        req: Request,
      ) => boolean)[]
      for (const skip of asyncSkips) {
        const a = build(variant, { block: { above: 30, scope: 'all', skip } })
        try {
          const janeAgent = await blockedSession(a)
          await janeAgent.get('/me').expect(200, { id: 1 })
          await janeAgent.get('/me').expect(200, { id: 1 })
          await new Promise((r) => setImmediate(r))
          assert.equal(a.logger.lines.filter((l) => l.includes('block_skip_async')).length, 1)
        } finally {
          await a.sqreen.close()
        }
      }
      // A match array, not `true`: truthy, so the request is skipped.
      const matching = (req: Request) => req.path.match(/^\/logout$/) as unknown as boolean
      const a = build(variant, { block: { above: 30, scope: 'all', skip: matching } })
      try {
        const janeAgent = await blockedSession(a)
        await janeAgent.get('/me').expect(403)
        await janeAgent.post('/logout').expect(200)
      } finally {
        await a.sqreen.close()
      }
    })

    it('while a login is blocked, a wrong password gets the same 403 as the right one (the block tells a guesser nothing)', async () => {
      const a = build(variant, { block: { above: 10 } })
      try {
        for (let i = 0; i < 10; i++) await logIn(a, { ...jane, password: `guess-${i}` }).expect(401)
        await eventually(async () => (await a.sqreen.risk('login:jdoe-private')).score > 10, 'the login to pass 10')
        const wrong = await logIn(a, { ...jane, password: 'guess-10' })
        const right = await logIn(a, jane)
        assert.deepEqual([wrong.status, wrong.body], [right.status, right.body])
        assert.equal(wrong.status, 403)
        const events = await a.log.waitFor(12)
        assert.deepEqual(
          events.slice(-2).map((e) => [e.type, e.reason]),
          [
            ['login.failed', 'blocked'],
            ['login.failed', 'blocked'],
          ],
        )
      } finally {
        await a.sqreen.close()
      }
    })

    it('with an async identify, a login linked to a blocked user is refused (the block list knows the link)', async () => {
      const a = build(variant, {
        block: { above: 10 },
        mode: 'advanced',
        secret: 'enforcement-spec-secret-0123456789',
        identify: async (user: unknown) => ({ id: (user as User).id }),
      })
      try {
        // A first success links jane's login to id:1 (once its event is built: identify is
        // async); later failures of that login count against id:1.
        assert.equal((await logIn(a, jane)).status, 200)
        await a.log.waitFor(1)
        for (let i = 0; i < 10; i++) await logIn(a, { ...jane, password: `guess-${i}` }).expect(401)
        await eventually(async () => (await a.sqreen.risk('id:1')).score > 10, 'jane to pass 10')
        // identify is async: the success cannot be keyed on the request path, but the login can.
        assert.equal((await logIn(a, jane)).status, 403)
        assert.equal((await logIn(a, bob)).status, 200)
      } finally {
        await a.sqreen.close()
      }
    })

    it('a blocked account: its login typed otherwise gets the same 403, right or wrong password (sync and async identify)', async () => {
      for (const identify of [undefined, async (user: unknown) => ({ id: (user as User).id })]) {
        const a = build(variant, {
          block: { above: 10 },
          ...(identify ? { mode: 'advanced' as const, secret: 'enforcement-spec-secret-0123456789', identify } : {}),
        })
        try {
          // Jane logs in as she types it, then her account is attacked above the level.
          assert.equal((await logIn(a, jane)).status, 200)
          await a.log.waitFor(1)
          for (let i = 0; i < 10; i++) await logIn(a, { ...jane, password: `guess-${i}` }).expect(401)
          await eventually(async () => (await a.sqreen.risk('id:1')).score > 10, 'jane to pass 10')
          // The application's lookup ignores case: the same account, typed otherwise.
          const shouted = { ...jane, username: jane.username.toUpperCase() }
          const wrong = await logIn(a, { ...shouted, password: 'guess-10' })
          const right = await logIn(a, shouted)
          assert.deepEqual([wrong.status, right.status], [403, 403], identify ? 'async identify' : 'sync identify')
        } finally {
          await a.sqreen.close()
        }
      }
    })

    it('a block ends when the ledger lets its entries go, if that is before the score decays (a long half-life)', async () => {
      let now = Date.parse('2026-12-04T12:00:00Z')
      // 40 points with a one-year half-life: decay alone would keep jane above 10 for two years,
      // but the ledger keeps entries 30 days, and her score is 0 once they have gone.
      const a = build(variant, { block: { above: 10 }, trigger: false, halfLife: '365d', clock: () => now })
      try {
        await blockJane(a)
        now += 29 * 86_400_000
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), true, 'day 29: the entries are still kept')
        now += 2 * 86_400_000
        assert.equal((await a.sqreen.risk('id:1')).score, 0, 'day 31: the entries have gone')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
      } finally {
        await a.sqreen.close()
      }
    })

    it('an async identify() that rejects while someone is blocked does not end the process; the block check says it cannot use it', async () => {
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown): void => void unhandled.push(reason)
      process.on('unhandledRejection', onUnhandled)
      const a = build(variant, {
        mode: 'advanced',
        secret: 'enforcement-spec-secret-0123456789',
        identify: async (user: unknown) => {
          const { id } = user as User
          if (id === 2) throw new Error('user database down')
          return { id }
        },
        block: { above: 30 },
      })
      try {
        await raise(a, jane, ['critical', 'critical'])
        await waitUntil(() => a.sqreen.stats().counters.events === 2, 'the reports to be scored')
        await eventually(async () => (await a.sqreen.risk('id:1')).score > 30, 'jane to be blocked')
        // Bob's identify() rejects on the request path's block check (and again for his event).
        assert.equal((await logIn(a, bob)).status, 200)
        // The check cannot wait for a promise: jane is known by key only to a synchronous identify.
        assert.equal((await logIn(a, jane)).status, 200)
        await new Promise((resolve) => setTimeout(resolve, 50))
        assert.deepEqual(unhandled, [])
        const warned = a.logger.lines.filter((l) => l.includes('block_identify_async'))
        assert.equal(warned.length, 1, JSON.stringify(a.logger.lines))
      } finally {
        process.off('unhandledRejection', onUnhandled)
        await a.sqreen.close()
      }
    })

    it('without block nothing is refused, whatever the score', async () => {
      const a = build(variant, {})
      try {
        const agent = request.agent(a.app)
        await logIn(agent, jane).expect(200)
        await raise(a, jane, ['critical', 'critical', 'critical', 'critical', 'critical'])
        await eventually(async () => (await a.sqreen.risk('id:1')).score >= 100, 'jane to reach the cap')
        assert.equal(a.sqreen.isBlocked(asRequest(jane)), false)
        await agent.get('/me').expect(200, { id: 1 })
        assert.equal((await logIn(a, jane)).status, 200)
        assert.equal(await a.sqreen.unblock('id:1'), false, 'nothing to lift without block')
      } finally {
        await a.sqreen.close()
      }
    })
  })
}

describe('enforcement: one login, two accounts', () => {
  it('an account is not refused for the block of another account its login is linked to (the same e-mail in two tenants)', async () => {
    const variant = variants[0]!
    const app = variant.express() as unknown as Express
    const passport = new variant.passport.Passport() as Authenticator
    const sqreen = sqreenAuth({ passport, block: { above: 40 }, logger: new MemoryLogger() })
    app.use(variant.express.json())
    app.use(passport.initialize())
    app.use(sqreen)
    // Tenant A's and tenant B's accounts share the e-mail; the password tells them apart here.
    const tenants: Record<string, { id: number }> = { 'a-right': { id: 101 }, 'b-right': { id: 102 } }
    passport.use(
      new LocalStrategy((login, password, done) =>
        done(null, login === 'pat@example.com' && (tenants[password] ?? false)),
      ),
    )
    app.post('/login', passport.authenticate('local', { session: false }), (req: Request, res: Response) => {
      res.json({ id: (req.user as { id: number }).id })
    })
    app.post('/report', (req: Request, res: Response) => {
      sqreen.trackEvent(req, 'sql_injection', {
        severity: 'critical',
        identity: { id: (req.body as { id: number }).id },
      })
      res.status(204).end()
    })
    try {
      await request(app).post('/login').send({ username: 'pat@example.com', password: 'a-right' }).expect(200)
      // Tenant A's account goes above the level.
      for (let i = 0; i < 3; i++) await request(app).post('/report').send({ id: 101 }).expect(204)
      for (let i = 0; i < 100 && (await sqreen.risk('id:101')).score <= 40; i++)
        await new Promise((r) => setTimeout(r, 10))
      assert.ok((await sqreen.risk('id:101')).score > 40, "tenant A's account above the level")
      await request(app).post('/login').send({ username: 'pat@example.com', password: 'a-right' }).expect(403)
      // Tenant B's account, same login typed the same way, is not blocked.
      const b = await request(app).post('/login').send({ username: 'pat@example.com', password: 'b-right' })
      assert.equal(b.status, 200, JSON.stringify(b.body))
      assert.equal(b.body.id, 102)
    } finally {
      await sqreen.close()
    }
  })
})

describe('enforcement: unblock with a store two processes share (Redis)', () => {
  it("a process that never blocked the user forgives the store's points too: the owner is let in through either", async () => {
    const variant = variants[0]!
    const prefix = testPrefix('unblock')
    const client = await inspector()
    // Two apps, each with its own block list and its own RedisStore on the same keys: two processes.
    const stores = [new RedisStore({ url: REDIS_URL, prefix }), new RedisStore({ url: REDIS_URL, prefix })]
    const [a, b] = stores.map((store) => build(variant, { block: { above: 15 }, store })) as [App, App]
    try {
      // The brute force goes through A only.
      await guessJanesLogin(a, 12, 15)
      // The operator unblocks in each process, as the README says.
      assert.equal(await a.sqreen.unblock('login:jdoe-private'), true)
      assert.equal(await b.sqreen.unblock('login:jdoe-private'), true, "B knows the store's points")
      // Jane logs in through B, which merges the forgiven failures into her account.
      const before = b.log.events.length
      assert.equal((await logIn(b, jane)).status, 200)
      await b.log.waitFor(before + 1)
      await eventually(async () => (await b.sqreen.risk('id:1')).score > 15, 'the failures merged into id:1')
      assert.equal((await logIn(b, jane)).status, 200, 'still let in through B')
      assert.equal((await logIn(a, jane)).status, 200, 'and through A')
    } finally {
      await a.sqreen.close()
      await b.sqreen.close()
      for (const store of stores) await store.close()
      await dropKeys(client, prefix)
      client.disconnect()
    }
  })
})
