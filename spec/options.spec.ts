import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, it } from 'node:test'
import passportSingleton from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import {
  anonEmail,
  MemoryStore,
  type Options,
  riskIncrease,
  SqreenAuthError,
  type SqreenAuthErrorCode,
  sqreenAuth,
  verifyWebhook,
} from '../lib/index.js'
import { resolveOptions } from '../lib/options.js'
import { harness, MemoryLogger, type Variant, variants } from './helpers/apps.js'

const SECRET = 'options-spec-secret-0123456789abcdef'
const quiet = { warn: () => {}, error: () => {} }
const freshPassport = (variant: Variant = variants[0] as Variant) => new variant.passport.Passport()

/** Calls sqreenAuth with anything (the point is to pass what the types forbid). */
const setupWith = (options: unknown) => () => sqreenAuth(options as Partial<Options>)
/** A readable title for a value, telling `{}` from `{ warn }`. */
const show = (value: unknown): string => {
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'number') return String(value)
  if (value !== null && typeof value === 'object') return `{ ${Object.keys(value).join(', ')} }`
  return JSON.stringify(value)
}
const base = (extra: Record<string, unknown>): Record<string, unknown> => ({
  passport: freshPassport(),
  logger: quiet,
  ...extra,
})

interface Case {
  readonly title: string
  readonly run: () => unknown
  readonly code: SqreenAuthErrorCode
  /** Substrings the message must contain: what is wrong and how to fix it. */
  readonly says: readonly string[]
  /** Substrings it must not contain (e.g. a hint where none fits). */
  readonly never?: readonly string[]
}

const CASES: readonly Case[] = [
  // Options that are not an object.
  { title: 'null', run: setupWith(null), code: 'ERR_SQREEN_OPTIONS', says: ['options object', 'got null'] },
  { title: 'a string', run: setupWith('advanced'), code: 'ERR_SQREEN_OPTIONS', says: ['got string'] },
  { title: 'a number', run: setupWith(42), code: 'ERR_SQREEN_OPTIONS', says: ['got number'] },
  { title: 'an array', run: setupWith([{ mode: 'advanced' }]), code: 'ERR_SQREEN_OPTIONS', says: ['got an array'] },
  // Unknown keys, with a hint when one is close.
  ...(
    [
      ['mod', 'mode'],
      ['onevent', 'onEvent'],
      ['secrets', 'secret'],
      ['identfy', 'identify'],
      ['loger', 'logger'],
      ['pasport', 'passport'],
      ['maxpending', 'maxPending'],
    ] as const
  ).map(
    ([given, hint]): Case => ({
      title: `unknown key "${given}"`,
      run: setupWith(base({ [given]: 'x' })),
      code: 'ERR_SQREEN_UNKNOWN_OPTION',
      says: [`Unknown option "${given}"`, `Did you mean "${hint}"?`],
    }),
  ),
  {
    title: 'an unknown key with nothing close',
    run: setupWith(base({ totallyUnrelated: true })),
    code: 'ERR_SQREEN_UNKNOWN_OPTION',
    says: ['Unknown option "totallyUnrelated"'],
    never: ['Did you mean'],
  },
  // Mode.
  {
    title: 'mode "advnced"',
    run: setupWith(base({ mode: 'advnced' })),
    code: 'ERR_SQREEN_MODE',
    says: ['"mode" must be "automatic" or "advanced", got "advnced".', 'Did you mean "advanced"?'],
  },
  {
    title: 'mode "automatc"',
    run: setupWith(base({ mode: 'automatc' })),
    code: 'ERR_SQREEN_MODE',
    says: ['Did you mean "automatic"?'],
  },
  {
    title: 'mode "manual"',
    run: setupWith(base({ mode: 'manual' })),
    code: 'ERR_SQREEN_MODE',
    says: ['got "manual"'],
    never: ['Did you mean'],
  },
  { title: 'mode 42', run: setupWith(base({ mode: 42 })), code: 'ERR_SQREEN_MODE', says: ['got "42"'] },
  // Advanced mode's requirements.
  {
    title: 'advanced mode without identify',
    run: setupWith(base({ mode: 'advanced', secret: SECRET })),
    code: 'ERR_SQREEN_IDENTIFY_REQUIRED',
    says: ['"identify"', 'identify: (user) => ({ id: user.id })'],
  },
  {
    title: 'advanced mode without a secret',
    run: setupWith(base({ mode: 'advanced', identify: () => ({ id: 1 }) })),
    code: 'ERR_SQREEN_SECRET',
    says: ['"secret"', 'SQREEN_AUTH_SECRET', 'openssl rand'],
  },
  {
    title: 'a secret shorter than 16 bytes',
    run: setupWith(base({ secret: 'fifteen-bytes!!' })),
    code: 'ERR_SQREEN_SECRET',
    says: ['at least 16 bytes', 'got 15'],
  },
  {
    title: 'a short Buffer secret',
    run: setupWith(base({ mode: 'advanced', identify: () => ({}), secret: Buffer.alloc(8) })),
    code: 'ERR_SQREEN_SECRET',
    says: ['got 8'],
  },
  // Wrong types.
  ...(
    [
      ['identify', 'not a function', '"identify" must be a function, got string'],
      ['identifyLogin', 1, '"identifyLogin" must be a function, got number'],
      ['login', {}, '"login" must be a function, got object'],
      ['onEvent', null, '"onEvent" must be a function, got null'],
      ['secret', 1234567890, '"secret" must be a string or a Buffer, got number'],
      ['logger', {}, '"logger" must have "warn" and "error" methods'],
      ['logger', { warn: () => {} }, '"logger" must have "warn" and "error" methods'],
      ['logger', null, '"logger" must have "warn" and "error" methods'],
      ['maxPending', 0, '"maxPending" must be a positive integer, got number'],
      ['maxPending', -5, '"maxPending" must be a positive integer'],
      ['maxPending', 1.5, '"maxPending" must be a positive integer'],
      ['maxPending', Number.NaN, '"maxPending" must be a positive integer'],
      ['maxPending', '10', '"maxPending" must be a positive integer, got string'],
      ['scoring', 'yes', '"scoring" must be true or false'],
      ['halfLife', -1, '"halfLife" must be a positive number'],
      ['halfLife', '0s', '"halfLife" must be a positive duration'],
      ['maxScore', 0, '"maxScore" must be a positive number'],
      ['onAlert', 'x', '"onAlert" must be a function'],
      ['fetch', 1, '"fetch" must be a function'],
      ['clock', 1, '"clock" must be a function'],
      ['store', {}, '"store" must implement the Store contract'],
      ['delivery', { timeout: -1 }, '"delivery.timeout" must be a positive number'],
      ['delivery', { retries: 1.5 }, '"delivery.retries" must be a whole number'],
      ['block', { above: 'x' }, '"block.above" must be a number'],
      ['block', { above: 50, scope: 'some' }, '"block.scope" must be "login" or "all"'],
      ['block', { above: 50, scope: 'all', skip: '/logout' }, '"block.skip" must be a function'],
      ['block', { above: 50, skip: () => true }, '"block.skip" only applies with scope: \'all\''],
      // Only a missing value is the default.
      ['maxPending', null, '"maxPending" must be a positive integer, got null'],
      // A backoff of 0 retried a dead hub in a tight loop; Node takes a timer of 2^31 ms as 1 ms.
      [
        'forward',
        { url: 'https://hub.example/hub/v1/events', key: 'k'.repeat(32), baseDelay: 0 },
        '"forward.baseDelay" must be a positive number',
      ],
      [
        'forward',
        { url: 'https://hub.example/hub/v1/events', key: 'k'.repeat(32), timeout: 2 ** 31 },
        '"forward.timeout" must be below 2147483648 ms',
      ],
      ['ignoreStrategies', 'jwt', '"ignoreStrategies" must be an array of strategy names'],
      // An object that claims to be a trigger without being one.
      ['trigger', { kind: 'riskIncrease' }, '"trigger" must be the result of riskIncrease('],
      [
        'trigger',
        { kind: 'riskIncrease', points: 10, withinMs: 0, escalate: [] },
        'without its points, withinMs and escalate',
      ],
    ] as const
  ).map(
    ([key, value, says]): Case => ({
      title: `${key}: ${show(value)}`,
      run: setupWith(base({ [key]: value })),
      code: 'ERR_SQREEN_OPTION_TYPE',
      says: [says],
    }),
  ),
  // Combinations that would be accepted and then never block anyone.
  {
    title: 'block without scoring in this process',
    run: setupWith(base({ block: { above: 20 }, scoring: false })),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['"block" needs scoring in this process'],
  },
  {
    title: 'block above maxScore',
    run: setupWith(base({ block: { above: 150 } })),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['"block.above" (150) must be below "maxScore" (100)'],
  },
  {
    title: 'block at maxScore',
    run: setupWith(base({ block: { above: 50 }, maxScore: 50 })),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['"block.above" (50) must be below "maxScore" (50)'],
  },
  // Something that is not an Authenticator.
  ...([{}, null, 'passport', { authenticate: () => {} }] as const).map(
    (value): Case => ({
      title: `passport: ${show(value)}`,
      run: setupWith({ passport: value, logger: quiet }),
      code: 'ERR_SQREEN_PASSPORT',
      says: ['"passport" must be a Passport Authenticator', 'new Passport()'],
    }),
  ),
  // Alert channels.
  {
    title: 'slack: not a URL',
    run: setupWith(base({ slack: 'hooks.slack.example/T000' })),
    code: 'ERR_SQREEN_URL',
    says: ['"slack" must be an http(s) URL'],
  },
  {
    title: 'email: a "to" that is not an address',
    run: setupWith(base({ email: { transport: 'smtp://localhost:2525', from: 'alerts@example.com', to: 'ops' } })),
    code: 'ERR_SQREEN_EMAIL',
    says: ['"email.from" and "email.to" must be e-mail addresses'],
  },
  // Not options, but the remaining setup-time codes, so every code in lib/errors.ts is exercised here.
  {
    title: 'watch() of something that is not a strategy',
    run: () => {
      const sqreen = sqreenAuth(base({}) as Partial<Options>)
      try {
        sqreen.watch({ name: 'nope' })
      } finally {
        void sqreen.close()
      }
    },
    code: 'ERR_SQREEN_WATCH',
    says: ['authenticate method'],
  },
  {
    title: 'anonEmail() of a non-address',
    run: () => anonEmail(1, 'nobody'),
    code: 'ERR_SQREEN_ANON_EMAIL',
    says: ['valid domain'],
  },
  // Nested options: an unknown key (with its hint), a wrong type, a bad URL or address.
  ...(
    [
      ['points', { wrong_pasword: 1 }, 'points.wrong_pasword', 'wrong_password'],
      ['delivery', { timout: 1 }, 'delivery.timout', 'timeout'],
      ['email', { transport: 'smtp://127.0.0.1', form: 'a@example.com', to: ['b@example.com'] }, 'email.form', 'from'],
      ['webhook', { url: 'https://hooks.example/x', secrte: SECRET }, 'webhook.secrte', 'secret'],
      ['slack', { webhookURL: 'https://hooks.slack.com/x' }, 'slack.webhookURL', 'webhookUrl'],
      ['block', { abvoe: 50 }, 'block.abvoe', 'above'],
    ] as const
  ).map(
    ([key, value, shown, hint]): Case => ({
      title: `unknown key "${shown}"`,
      run: setupWith(base({ [key]: value })),
      code: 'ERR_SQREEN_UNKNOWN_OPTION',
      says: [`"${shown}"`, `Did you mean "${hint}"?`],
    }),
  ),
  {
    title: 'mode: null (only a missing mode is the default)',
    run: setupWith(base({ mode: null })),
    code: 'ERR_SQREEN_MODE',
    says: ['"mode" must be "automatic" or "advanced"'],
  },
  {
    title: 'email without "from"',
    run: setupWith(base({ email: { transport: 'smtp://127.0.0.1', to: ['b@example.com'] } })),
    code: 'ERR_SQREEN_EMAIL',
    says: ['"email.from"'],
  },
  {
    title: 'webhook.url that is not http(s)',
    run: setupWith(base({ webhook: { url: 'ftp://hooks.example/', secret: SECRET } })),
    code: 'ERR_SQREEN_URL',
    says: ['"webhook.url" must be an http(s) URL'],
  },
  {
    title: 'slack.webhookUrl that is no URL',
    run: setupWith(base({ slack: { webhookUrl: 'nope' } })),
    code: 'ERR_SQREEN_URL',
    says: ['"slack.webhookUrl" must be an http(s) URL'],
  },
  {
    title: 'a "whsec_" webhook secret that is not standard base64',
    run: setupWith(base({ webhook: { url: 'https://hooks.example/x', secret: `whsec_${'!'.repeat(20)}` } })),
    code: 'ERR_SQREEN_SECRET',
    says: ['"webhook.secret"', 'standard base64', 'openssl rand -base64 32'],
  },
  {
    title: 'a "whsec_" webhook secret whose base64 decodes to too few bytes',
    run: setupWith(base({ webhook: { url: 'https://hooks.example/x', secret: `whsec_${'A'.repeat(12)}` } })),
    code: 'ERR_SQREEN_SECRET',
    says: ['"webhook.secret"', 'at least 16 bytes', 'decodes'],
  },
  {
    title: 'a webhook secret shorter than 16 bytes',
    run: setupWith(base({ webhook: { url: 'https://hooks.example/x', secret: 'short' } })),
    code: 'ERR_SQREEN_SECRET',
    says: ['"webhook.secret"'],
  },
  // Options of the public helpers and stores.
  {
    title: 'riskIncrease() with an unknown key',
    run: () => riskIncrease({ point: 5 } as never),
    code: 'ERR_SQREEN_UNKNOWN_OPTION',
    says: ['riskIncrease()', '"point"', 'Did you mean "points"?'],
  },
  {
    title: 'riskIncrease(null)',
    run: () => riskIncrease(null as never),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['riskIncrease() takes an options object', 'got null'],
  },
  {
    title: 'riskIncrease() with "escalate" not an array',
    run: () => riskIncrease({ escalate: 30 } as never),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['"escalate" must be an array'],
  },
  {
    title: 'new MemoryStore() with an unknown key',
    run: () => new MemoryStore({ maxkeys: 1 } as never),
    code: 'ERR_SQREEN_UNKNOWN_OPTION',
    says: ['MemoryStore', '"maxkeys"', 'Did you mean "maxKeys"?'],
  },
  {
    title: 'new MemoryStore(null)',
    run: () => new MemoryStore(null as never),
    code: 'ERR_SQREEN_OPTION_TYPE',
    says: ['MemoryStore takes an options object', 'got null'],
  },
  {
    title: 'verifyWebhook() without a secret',
    run: () => verifyWebhook({}, '{}', undefined as never),
    code: 'ERR_SQREEN_SECRET',
    says: ['verifyWebhook() needs the webhook secret'],
  },
  // The forward option (spec/transport.forward.spec.ts covers its other refusals).
  {
    title: 'forward without a key',
    run: setupWith(base({ forward: { url: 'https://hub.example/v1/events' } })),
    code: 'ERR_SQREEN_FORWARD_KEY',
    says: ['"forward.key" is required', 'Ed25519'],
  },
]

describe('options: every setup error has a stable code and a helpful message', () => {
  let savedSecret: string | undefined
  beforeEach(() => {
    // The environment must not supply the secret that some cases leave out.
    savedSecret = process.env.SQREEN_AUTH_SECRET
    delete process.env.SQREEN_AUTH_SECRET
  })
  afterEach(() => {
    if (savedSecret !== undefined) process.env.SQREEN_AUTH_SECRET = savedSecret
  })

  for (const c of CASES) {
    it(`${c.code}: ${c.title}`, () => {
      let caught: unknown
      try {
        c.run()
      } catch (err) {
        caught = err
      }
      assert.ok(caught instanceof SqreenAuthError, `expected a SqreenAuthError, got ${String(caught)}`)
      assert.ok(caught instanceof Error)
      assert.equal(caught.name, 'SqreenAuthError')
      assert.equal(caught.code, c.code)
      for (const s of c.says)
        assert.ok(caught.message.includes(s), `message ${JSON.stringify(caught.message)} says ${s}`)
      for (const s of c.never ?? []) assert.ok(!caught.message.includes(s), `message must not say ${s}`)
    })
  }

  // Read from the source so that a new option error cannot be added without a case here.
  const codesIn = (file: string): Set<string> => {
    const source = readFileSync(new URL(`../lib/${file}`, import.meta.url), 'utf8')
    return new Set(Array.from(source.matchAll(/'(ERR_SQREEN_[A-Z_]+)'/g), (m) => m[1] as string))
  }

  it('covers every code that lib/options.ts can throw', () => {
    const tested = new Set<string>(CASES.map((c) => c.code))
    const thrown = codesIn('options.ts')
    assert.ok(thrown.size >= 7, 'the codes were found in the source')
    for (const code of thrown) assert.ok(tested.has(code), `${code} has a case`)
  })

  it('uses only codes declared in lib/errors.ts', () => {
    const declared = codesIn('errors.ts')
    for (const c of CASES) assert.ok(declared.has(c.code), c.code)
  })
})

describe('options: resolution', () => {
  it('resolves into a frozen configuration, nested parts included, holding its own copy of a webhook secret Buffer', () => {
    const webhookSecret = Buffer.from('webhook-secret-0123456789abcdef')
    const to = ['soc@example.com']
    const config = resolveOptions({
      email: { transport: 'smtp://127.0.0.1:2525', from: 'alerts@example.com', to },
      passport: freshPassport(),
      logger: quiet,
      points: { brute_force: 30 },
      slack: { webhookUrl: 'https://hooks.slack.com/services/T/B/x' },
      webhook: { url: 'https://hooks.example/x', secret: webhookSecret },
      block: { above: 60 },
      delivery: { retries: 2 },
    })
    for (const [name, part] of Object.entries({
      config,
      points: config.points,
      slack: config.slack,
      webhook: config.webhook,
      block: config.block,
      delivery: config.delivery,
      email: config.email,
      'email.to': config.email?.to,
    })) {
      assert.ok(Object.isFrozen(part), `${name} is frozen`)
    }
    to.push('attacker@example.com')
    assert.deepEqual(config.email?.to, ['soc@example.com'])
    webhookSecret.fill(0)
    assert.equal(String(config.webhook?.secret), 'webhook-secret-0123456789abcdef')
  })

  it("never mutates the caller's object (a frozen one is accepted)", async () => {
    const logger = new MemoryLogger()
    const onEvent = (): void => {}
    const identify = (u: { id: number }) => ({ id: u.id })
    const secret = Buffer.from(SECRET)
    const options = {
      passport: freshPassport(),
      mode: 'advanced' as const,
      identify,
      identifyLogin: undefined,
      secret,
      onEvent,
      logger,
      maxPending: 5,
    }
    const snapshot = { ...options }
    const keys = Object.keys(options)
    const sqreen = sqreenAuth(Object.freeze(options))
    assert.deepEqual(Object.keys(options), keys)
    for (const key of keys) {
      assert.equal(options[key as keyof typeof options], snapshot[key as keyof typeof snapshot], key)
    }
    assert.deepEqual(secret, Buffer.from(SECRET))
    assert.deepEqual(logger.lines, [])
    await sqreen.close()
  })

  for (const variant of variants) {
    it(`resolves once: later changes to the caller's secret do not change the key (${variant.name})`, async () => {
      const secret = Buffer.from(SECRET)
      const h = harness(
        variant,
        ({ app, passport }) => {
          passport.use(new LocalStrategy((_u, _p, done) => done(null, false)))
          app.post('/login', passport.authenticate('local', { session: false }))
        },
        { mode: 'advanced', identify: () => ({}), secret },
      )
      secret.fill(0)
      await request(h.app).post('/login').send({ username: 'bob', password: 'x' }).expect(401)
      const [event] = await h.log.waitFor(1)
      assert.equal(event?.identity.loginHash, createHmac('sha256', SECRET).update('bob').digest('base64url'))
      await h.sqreen.close()
    })

    it(`reads the secret from SQREEN_AUTH_SECRET when none is passed (${variant.name})`, async () => {
      const saved = process.env.SQREEN_AUTH_SECRET
      const fromEnv = 'secret-from-the-environment-0123'
      process.env.SQREEN_AUTH_SECRET = fromEnv
      try {
        const h = harness(
          variant,
          ({ app, passport }) => {
            passport.use(new LocalStrategy((_u, _p, done) => done(null, false)))
            app.post('/login', passport.authenticate('local', { session: false }))
          },
          { mode: 'advanced', identify: () => ({}) },
        )
        await request(h.app).post('/login').send({ username: 'Bob', password: 'x' }).expect(401)
        const [event] = await h.log.waitFor(1)
        assert.equal(event?.identity.loginHash, createHmac('sha256', fromEnv).update('bob').digest('base64url'))
        await h.sqreen.close()

        // An explicit secret wins over the environment.
        const explicit = harness(
          variant,
          ({ app, passport }) => {
            passport.use(new LocalStrategy((_u, _p, done) => done(null, false)))
            app.post('/login', passport.authenticate('local', { session: false }))
          },
          { mode: 'advanced', identify: () => ({}), secret: SECRET },
        )
        await request(explicit.app).post('/login').send({ username: 'bob', password: 'x' }).expect(401)
        const [other] = await explicit.log.waitFor(1)
        assert.equal(other?.identity.loginHash, createHmac('sha256', SECRET).update('bob').digest('base64url'))
        await explicit.sqreen.close()

        // A short secret in the environment is refused like a short option.
        process.env.SQREEN_AUTH_SECRET = 'short'
        assert.throws(
          () => sqreenAuth({ passport: freshPassport(variant), mode: 'advanced', identify: () => ({}) }),
          (err: unknown) => err instanceof SqreenAuthError && err.code === 'ERR_SQREEN_SECRET',
        )
      } finally {
        if (saved === undefined) delete process.env.SQREEN_AUTH_SECRET
        else process.env.SQREEN_AUTH_SECRET = saved
      }
    })
  }

  it('observes the passport singleton by default, and lets it go on close()', async () => {
    const target = passportSingleton as unknown as Record<string, unknown>
    const before = target.authenticate
    const sqreen = sqreenAuth({ logger: quiet })
    assert.notEqual(target.authenticate, before, 'the singleton is hooked')
    await sqreen.close()
    assert.equal(target.authenticate, before)
  })
})
