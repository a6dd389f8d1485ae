/**
 * LoginLinks: which user a login key belongs to once a login with it succeeded.
 * Bounded, with a second chance for links used since they were made (CLOCK), and a
 * user logging in again with the same identity keeps the link that is there.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import express, { type Express } from 'express'
import passportModule from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { LoginLinks } from '../lib/identity/links.js'
import { type Options, type SqreenAuth, sqreenAuth } from '../lib/index.js'
import type { RiskAlert } from '../lib/risk/alert.js'
import { MemoryLogger } from './helpers/apps.js'
import { waitUntil } from './helpers/receivers.js'

describe('LoginLinks', () => {
  it('answers the linked user of a login key, and nothing for an unknown one', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1 }, 'typed')
    const linked = links.get('login:a')
    assert.equal(linked?.userKey, 'id:1')
    assert.deepEqual(linked?.identity, { id: 1 })
    assert.equal(links.get('login:b'), undefined)
  })

  it('keeps the link in place when the same user logs in again with an equal identity', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.com' }, 'typed')
    const first = links.get('login:a')
    // A fresh but equal identity object, as every login builds one.
    links.set('login:a', 'id:1', { email: 'anon-1@example.com', id: 1 }, 'typed')
    assert.equal(links.get('login:a'), first)
  })

  it('replaces the link when the identity or the user changed', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.com' }, 'typed')
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.org' }, 'typed')
    assert.deepEqual(links.get('login:a')?.identity, { id: 1, email: 'anon-1@example.org' })
    links.set('login:a', 'id:1', { id: 1 }, 'typed') // a field fewer
    assert.deepEqual(links.get('login:a')?.identity, { id: 1 })
    links.set('login:a', 'id:1', { id: 1, team: 'x' }, 'typed') // a field more
    assert.deepEqual(links.get('login:a')?.identity, { id: 1, team: 'x' })
    links.set('login:a', 'id:2', { id: 1, team: 'x' }, 'typed')
    assert.equal(links.get('login:a')?.userKey, 'id:2')
  })

  it('past its bound, forgets the oldest link not used since, and keeps a used one', () => {
    const links = new LoginLinks(3)
    links.set('login:a', 'id:a', { id: 'a' }, 'typed')
    links.set('login:b', 'id:b', { id: 'b' }, 'typed')
    links.set('login:c', 'id:c', { id: 'c' }, 'typed')
    assert.ok(links.get('login:a'), 'a is used: it gets a second chance')
    links.set('login:d', 'id:d', { id: 'd' }, 'typed')
    assert.ok(links.get('login:a'), 'a was used, so it stays')
    assert.equal(links.get('login:b'), undefined, 'b, the oldest unused, is forgotten')
    assert.ok(links.get('login:c'))
    assert.ok(links.get('login:d'))
  })

  it('stays within its bound when every link is used, and keeps the one just made', () => {
    const links = new LoginLinks(50)
    for (let i = 0; i < 5_000; i++) {
      links.set(`login:${i}`, `id:${i}`, { id: i }, 'typed')
      // Use every link there is: eviction must still find one to forget, and never the new one.
      for (let j = Math.max(0, i - 60); j <= i; j++) links.get(`login:${j}`)
      assert.equal(links.get(`login:${i}`)?.userKey, `id:${i}`)
    }
    let kept = 0
    for (let i = 0; i < 5_000; i++) if (links.get(`login:${i}`) !== undefined) kept++
    assert.equal(kept, 50)
  })

  it('keeps the links in use under a stream of one-off logins', () => {
    // Ten regulars who log in all the time among a flood of logins seen once.
    const links = new LoginLinks(100)
    for (let i = 0; i < 10; i++) links.set(`login:regular${i}`, `id:r${i}`, { id: `r${i}` }, 'typed')
    for (let n = 0; n < 10_000; n++) {
      links.set(`login:once${n}`, `id:o${n}`, { id: `o${n}` }, 'typed')
      if (n % 20 === 0) for (let i = 0; i < 10; i++) assert.ok(links.get(`login:regular${i}`), `regular ${i} at ${n}`)
    }
  })
})

describe('a look-alike account cannot take a victim’s login over', () => {
  // An application whose lookup is exact (a unique index on the e-mail as typed), where an
  // attacker registered `ａlice@example.com` (a full-width ａ): the same key as alice's after
  // normalisation (NFKC), another account for the application.
  const accounts = [
    { id: 1, email: 'alice@example.com', password: 'alice-right' },
    { id: 3, email: '\uff41lice@example.com', password: 'attacker-own' },
    // More look-alikes, for an exact (case-sensitive) lookup.
    { id: 4, email: 'Alice@example.com', password: 'attacker-own' },
    { id: 5, email: 'ALICE@example.com', password: 'attacker-own' },
    { id: 6, email: 'aLice@example.com', password: 'attacker-own' },
  ]
  const build = (options: Partial<Options> = {}) => {
    const alerts: RiskAlert[] = []
    const passport = new passportModule.Passport()
    passport.use(
      new LocalStrategy({ usernameField: 'email' }, (email, password, done) => {
        const account = accounts.find((a) => a.email === email)
        done(null, account !== undefined && account.password === password ? { id: account.id, email } : false)
      }),
    )
    const app = express()
    app.set('trust proxy', 'loopback')
    app.use(express.urlencoded({ extended: false }))
    app.use(passport.initialize())
    const sqreen = sqreenAuth({ passport, onAlert: (a) => void alerts.push(a), logger: new MemoryLogger(), ...options })
    app.use(sqreen)
    app.post('/login', passport.authenticate('local', { session: false }), (_req, res) => res.send('ok'))
    // The application's own detection against an account.
    app.post('/report', (req, res) => {
      sqreen.trackEvent(req, 'sql_injection', { severity: 'critical', identity: { id: Number(req.query.id) } })
      res.status(204).end()
    })
    const attempt = (email: string, password: string) =>
      request(app).post('/login').set('X-Forwarded-For', '203.0.113.66').type('form').send({ email, password })
    return { app, alerts, sqreen, attempt }
  }

  const blockAccount = async (app: Express, sqreen: SqreenAuth, id: number): Promise<void> => {
    for (let i = 0; i < 3; i++) await request(app).post(`/report?id=${id}`).expect(204)
    for (let i = 0; i < 100 && (await sqreen.risk(`id:${id}`)).score <= 40; i++)
      await new Promise((r) => setTimeout(r, 10))
    assert.ok((await sqreen.risk(`id:${id}`)).score > 40, `id:${id} above the level`)
  }

  it("a blocked look-alike does not stop the victim's brute force from counting (refused, but scored)", async () => {
    const { app, alerts, sqreen, attempt } = build({ block: { above: 40 } })
    try {
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      await blockAccount(app, sqreen, 3)
      await attempt('alice@example.com', 'alice-right').expect(200)
      for (let i = 0; i < 15; i++) await attempt('alice@example.com', `guess-${i}`)
      assert.ok((await sqreen.risk('id:1')).score >= 24, 'the brute force counts against alice')
      await attempt('alice@example.com', 'alice-right').expect(200)
      await waitUntil(() => alerts.some((a) => a.userKey === 'id:1' && a.takeover === true), "alice's takeover alert")
    } finally {
      await sqreen.close()
    }
  })

  it('four look-alikes logging in one after another do not push a blocked victim out: still the same 403', async () => {
    const { app, sqreen, attempt } = build({ block: { above: 40 } })
    try {
      await attempt('alice@example.com', 'alice-right').expect(200)
      await blockAccount(app, sqreen, 1)
      for (const email of ['\uff41lice@example.com', 'Alice@example.com', 'ALICE@example.com', 'aLice@example.com'])
        await attempt(email, 'attacker-own').expect(200)
      const wrong = await attempt('alice@example.com', 'guess')
      const right = await attempt('alice@example.com', 'alice-right')
      assert.deepEqual([wrong.status, right.status], [403, 403])
    } finally {
      await sqreen.close()
    }
  })

  it('with an async identify, an account is not refused for the block of an earlier account of its login', async () => {
    const { app, sqreen, attempt } = build({
      block: { above: 40 },
      mode: 'advanced',
      secret: 'look-alike-spec-secret-0123456789',
      identify: async (user: unknown) => ({ id: (user as { id: number }).id }),
    })
    try {
      await attempt('alice@example.com', 'alice-right').expect(200)
      await new Promise((r) => setTimeout(r, 20))
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      await new Promise((r) => setTimeout(r, 20))
      await blockAccount(app, sqreen, 1)
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
    } finally {
      await sqreen.close()
    }
  })

  it("the owner's own login after a brute force does not use up the takeover alert for the attacker's, from elsewhere", async () => {
    const { app, alerts, sqreen } = build()
    const from = (ip: string, password: string) =>
      request(app).post('/login').set('X-Forwarded-For', ip).type('form').send({ email: 'alice@example.com', password })
    try {
      for (let i = 0; i < 12; i++) await from('203.0.113.66', `guess-${i}`).expect(401)
      await from('192.0.2.10', 'alice-right').expect(200) // alice, at home
      await from('192.0.2.10', 'alice-right').expect(200) // again: the same network, no new takeover
      await from('198.51.100.7', 'alice-right').expect(200) // the attacker, who guessed it
      await waitUntil(() => alerts.filter((a) => a.takeover === true).length >= 2, 'two takeover alerts')
      assert.deepEqual(
        alerts.filter((a) => a.takeover === true).map((a) => [a.userKey, a.ip]),
        [
          ['id:1', '192.0.2.0/24'],
          ['id:1', '198.51.100.0/24'],
        ],
      )
    } finally {
      await sqreen.close()
    }
  })

  it('a brute force is scored once a day for an account, however many times its login is merged', async () => {
    const { sqreen, attempt } = build()
    try {
      for (let i = 0; i < 12; i++) await attempt('alice@example.com', `guess-${i}`).expect(401)
      await attempt('alice@example.com', 'alice-right').expect(200)
      for (let i = 0; i < 12; i++) await attempt('alice@example.com', `typo-${i}`).expect(401)
      await attempt('alice@example.com', 'alice-right').expect(200)
      await attempt('alice@example.com', 'alice-right').expect(200)
      const risk = await sqreen.risk('id:1')
      assert.equal(risk.entries.filter((e) => e.detection === 'brute_force').length, 1)
      assert.equal(risk.entries.filter((e) => e.detection === 'success_after_brute_force').length, 1)
    } finally {
      await sqreen.close()
    }
  })

  it("a blocked victim's login answers the same 403 to any password, even after the look-alike logged in", async () => {
    const { app, sqreen, attempt } = build({ block: { above: 40 } })
    try {
      await attempt('alice@example.com', 'alice-right').expect(200)
      for (let i = 0; i < 3; i++) await request(app).post('/report?id=1').expect(204)
      for (let i = 0; i < 100 && (await sqreen.risk('id:1')).score <= 40; i++)
        await new Promise((r) => setTimeout(r, 10))
      await attempt('alice@example.com', 'alice-right').expect(403)
      // The attacker's own account re-links the login it normalises to.
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      const wrong = await attempt('alice@example.com', 'guess')
      const right = await attempt('alice@example.com', 'alice-right')
      assert.deepEqual([wrong.status, right.status], [403, 403])
    } finally {
      await sqreen.close()
    }
  })

  it("logging in to the look-alike right after guessing does not hide the victim's takeover", async () => {
    const { alerts, sqreen, attempt } = build()
    try {
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      for (let i = 0; i < 12; i++) await attempt('alice@example.com', `guess-${i}`).expect(401)
      // The attacker's own account takes the login's ledger with it: the brute force's mark stays.
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      await attempt('alice@example.com', 'alice-right').expect(200)
      await waitUntil(() => alerts.some((a) => a.userKey === 'id:1'), "the victim's takeover alert")
      const victim = alerts.find((a) => a.userKey === 'id:1') as RiskAlert
      assert.equal(victim.takeover, true)
      assert.ok(victim.detections.some((d) => d.detection === 'success_after_brute_force'))
    } finally {
      await sqreen.close()
    }
  })

  it("the attacker's own login does not make the victim's brute force the attacker's; the takeover alerts for the victim", async () => {
    const { alerts, sqreen, attempt } = build()
    try {
      await attempt('\uff41lice@example.com', 'attacker-own').expect(200)
      for (let i = 0; i < 12; i++) await attempt('alice@example.com', `guess-${i}`).expect(401)
      await waitUntil(() => alerts.length >= 1, 'the brute force alert')
      // Under the login typed (which the team can read), not under the attacker's account.
      assert.deepEqual(
        alerts.map((a) => a.userKey),
        ['login:alice@example.com'],
      )
      assert.ok((await sqreen.risk('id:3')).score < 5, 'the attacker account did not take the brute force')
      // The guess that works: the takeover alerts for alice's account, with the brute force.
      await attempt('alice@example.com', 'alice-right').expect(200)
      await waitUntil(() => alerts.length >= 2, 'the takeover alert')
      const takeover = alerts[1] as RiskAlert
      assert.equal(takeover.userKey, 'id:1')
      assert.ok(takeover.detections.some((d) => d.detection === 'brute_force'))
      assert.ok(takeover.detections.some((d) => d.detection === 'success_after_brute_force'))
    } finally {
      await sqreen.close()
    }
  })
})
