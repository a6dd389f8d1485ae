import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import { createRequire } from 'node:module'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Strategy } from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { type AuthEvent, anonEmail, type Options } from '../lib/index.js'
import { type Harness, harness, type Variant, variants } from './helpers/apps.js'

const require = createRequire(import.meta.url)
type BasicVerify = (userid: string, password: string, done: (err: unknown, user?: unknown) => void) => void
// passport-http ships no types.
const { BasicStrategy } = require('passport-http') as { BasicStrategy: new (verify: BasicVerify) => Strategy }

/**
 * The privacy guarantee of advanced mode, checked over generated data: nothing
 * that identifies a person (e-mail local part, username, raw login, password,
 * other body fields) appears in any emitted event or any log line.
 *
 * Every secret string is built around a "core" of at least 6 letters from an
 * alphabet that none of the fixed event text uses (UUIDs are hex, times are
 * digits, strategy names and messages are ordinary words), so a substring
 * match is meaningful: finding a core anywhere means it leaked.
 */
const CORE = fc.string({ unit: fc.constantFrom(...'qjzvkwxy'), minLength: 6, maxLength: 12 })
// Around the core, e-mail local parts get arbitrary non-space, non-@ characters.
const DECOR = fc.string({ unit: fc.constantFrom('.', '+', '_', '-', '%', '!', '1', '9', 'é', 'Ü', '漢'), maxLength: 3 })
const DOMAIN = fc.constantFrom('example.com', 'Mail.Example.org', 'bücher.example', 'corp.test')
const ID = fc.oneof(
  fc.nat({ max: 1_000_000 }),
  fc.nat({ max: 99_999 }).map((n) => `u-${n}`),
)

interface GenUser {
  readonly id: number | string
  readonly email: string
  readonly core: string
  readonly username: string
  readonly password: string
}

const USERS = fc
  .record({
    // Unique cores so that no two users share an e-mail, a username or a password.
    cores: fc.uniqueArray(CORE, { minLength: 6, maxLength: 9 }),
    ids: fc.uniqueArray(ID, { minLength: 3, maxLength: 3 }),
    decor: fc.array(fc.tuple(DECOR, DECOR, DOMAIN), { minLength: 3, maxLength: 3 }),
  })
  .map(({ cores, ids, decor }): GenUser[] =>
    Array.from({ length: Math.floor(cores.length / 3) }, (_, i) => {
      const [pre, post, domain] = decor[i] as [string, string, string]
      const core = cores[3 * i] as string
      return {
        id: ids[i] as number | string,
        core,
        email: `${pre}${core}${post}@${domain}`,
        username: cores[3 * i + 1] as string,
        password: cores[3 * i + 2] as string,
      }
    }),
  )

const KINDS = [
  'local-ok',
  'local-wrong',
  'local-unknown',
  'local-no-password',
  'local-no-login',
  'nested-ok',
  'nested-wrong',
  'basic-ok',
  'basic-wrong',
  'basic-none',
] as const
type Kind = (typeof KINDS)[number]

const STATUS: Record<Kind, number> = {
  'local-ok': 200,
  'local-wrong': 401,
  'local-unknown': 401,
  'local-no-password': 400,
  'local-no-login': 400,
  'nested-ok': 200,
  'nested-wrong': 401,
  'basic-ok': 200,
  'basic-wrong': 401,
  'basic-none': 401,
}

const ATTEMPTS = fc.array(
  fc.record({
    kind: fc.constantFrom(...KINDS),
    user: fc.nat(),
    via: fc.constantFrom('email', 'username'),
    upper: fc.boolean(),
    pad: fc.constantFrom('', ' ', '  '),
    // Prefixed with a letter outside the core alphabet, so it never names a real user.
    unknown: CORE.map((c) => `n${c}`),
    extra: fc.dictionary(fc.constantFrom('remember', 'next', 'note', 'display_name'), CORE, { maxKeys: 3 }),
  }),
  { minLength: 3, maxLength: 7 },
)

type Identify = NonNullable<Options['identify']>

// The identify of the README, and a careless one that also hands over the plain e-mail
// (which the guard must refuse); the second needs fewer runs, it only adds that check.
const IDENTIFIERS: [title: string, identify: Identify, numRuns: number][] = [
  ['identify returns id and anonEmail', (u: GenUser) => ({ id: u.id, email: anonEmail(u.id, u.email) }), 40],
  [
    'identify also returns the plain e-mail',
    (u: GenUser) => ({ id: u.id, email: anonEmail(u.id, u.email), contact: u.email }),
    20,
  ],
]

const findUser = (users: readonly GenUser[], login: string): GenUser | undefined => {
  const wanted = login.trim().toLowerCase()
  return users.find((u) => u.email.toLowerCase() === wanted || u.username === wanted)
}

interface App {
  h: Harness
  server: Server
  setUsers(users: GenUser[]): void
}

const start = (variant: Variant, identify: Identify): App => {
  let users: GenUser[] = []
  const verify = (login: string, password: string, done: (err: unknown, user?: GenUser | false) => void): void => {
    const user = findUser(users, login)
    done(null, user !== undefined && user.password === password ? user : false)
  }
  const h = harness(
    variant,
    ({ app, passport }) => {
      passport.use('local', new LocalStrategy({ usernameField: 'login' }, verify))
      passport.use(
        'nested',
        new LocalStrategy({ usernameField: 'user[email]', passwordField: 'user[password]' }, verify),
      )
      passport.use('basic', new BasicStrategy(verify))
      const ok = (_req: unknown, res: { json(body: unknown): void }): void => res.json({ ok: true })
      app.post('/login', passport.authenticate('local', { session: false }), ok)
      app.post('/nested', passport.authenticate('nested', { session: false }), ok)
      app.get('/basic', passport.authenticate('basic', { session: false }), ok)
    },
    { mode: 'advanced', secret: 'pii-property-secret-0123456789abcdef', identify },
  )
  const setUsers = (next: GenUser[]): void => {
    users = next
  }
  return { h, server: h.app.listen(0), setUsers }
}

for (const variant of variants) {
  for (const [title, identify, numRuns] of IDENTIFIERS) {
    describe(`advanced mode leaks no personal data (${variant.name}, ${title})`, () => {
      let app: App
      before(() => {
        app = start(variant, identify)
      })
      after(async () => {
        await app.h.sqreen.close()
        await new Promise((resolve) => app.server.close(resolve))
      })

      it('holds across generated users, logins and request bodies', async () => {
        await fc.assert(
          fc.asyncProperty(USERS, ATTEMPTS, async (users, attempts) => {
            const { h, server, setUsers } = app
            setUsers(users)
            const needles = new Set<string>()
            for (const u of users) {
              for (const s of [u.core, u.email.split('@')[0] as string, u.username, u.password]) needles.add(s)
            }
            const firstEvent = h.log.events.length
            const firstLine = h.logger.lines.length
            const agent = request(server)

            for (const a of attempts) {
              const user = users[a.user % users.length] as GenUser
              const base = a.via === 'email' ? user.email : user.username
              const typed = `${a.pad}${a.upper ? base.toUpperCase() : base}${a.pad}`
              const wrong = `${user.password}-wrong`
              needles.add(typed.trim().toLowerCase())
              needles.add(a.unknown)
              for (const v of Object.values(a.extra)) needles.add(v)
              const basic = (login: string, password: string) =>
                `Basic ${Buffer.from(`${login}:${password}`).toString('base64')}`
              let res: request.Response
              switch (a.kind) {
                case 'local-ok':
                  res = await agent.post('/login').send({ ...a.extra, login: typed, password: user.password })
                  break
                case 'local-wrong':
                  res = await agent.post('/login').send({ ...a.extra, login: typed, password: wrong })
                  break
                case 'local-unknown':
                  res = await agent.post('/login').send({ ...a.extra, login: a.unknown, password: user.password })
                  break
                case 'local-no-password':
                  res = await agent.post('/login').send({ ...a.extra, login: typed })
                  break
                case 'local-no-login':
                  res = await agent.post('/login').send({ ...a.extra, password: user.password })
                  break
                case 'nested-ok':
                  res = await agent
                    .post('/nested')
                    .send({ ...a.extra, user: { email: typed, password: user.password } })
                  break
                case 'nested-wrong':
                  res = await agent.post('/nested').send({ ...a.extra, user: { email: typed, password: wrong } })
                  break
                case 'basic-ok':
                  res = await agent.get('/basic').set('Authorization', basic(typed, user.password))
                  break
                case 'basic-wrong':
                  res = await agent.get('/basic').set('Authorization', basic(typed, wrong))
                  break
                case 'basic-none':
                  res = await agent.get('/basic')
                  break
              }
              // The logins really happen: the observed app answers as it would without us.
              assert.equal(res.status, STATUS[a.kind], a.kind)
            }

            const events = (await h.log.waitFor(firstEvent + attempts.length)).slice(firstEvent)
            assert.equal(events.length, attempts.length)
            attempts.forEach((a, i) => {
              const event = events[i] as AuthEvent
              const user = users[a.user % users.length] as GenUser
              if (a.kind.endsWith('-ok')) {
                // Not vacuous: the boundary did map the user, to identify's checked output only.
                assert.equal(event.type, 'login.succeeded')
                assert.deepEqual(event.identity, { id: user.id, email: anonEmail(user.id, user.email) })
              } else {
                assert.equal(event.type, 'login.failed')
                for (const key of Object.keys(event.identity)) assert.ok(['id', 'email', 'loginHash'].includes(key))
              }
            })

            const eventText = JSON.stringify(events).toLowerCase()
            const logText = h.logger.lines.slice(firstLine).join('\n').toLowerCase()
            for (const needle of needles) {
              const n = needle.toLowerCase()
              assert.ok(!eventText.includes(n), `"${needle}" leaked into an event: ${eventText}`)
              assert.ok(!logText.includes(n), `"${needle}" leaked into a log line: ${logText}`)
            }
          }),
          { numRuns },
        )
      })
    })
  }
}
