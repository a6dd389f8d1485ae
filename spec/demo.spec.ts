import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import supertest from 'supertest'
import { createDemoApp, type DemoOptions, formatEvent } from '../demo-app/app.js'
import type { AuthEvent } from '../lib/index.js'
import { EventLog, MemoryLogger } from './helpers/apps.js'
import { spawnTsx } from './helpers/process.js'

const SECRET = 'demo-spec-secret-0123456789abcdef'

/** The demo app on a real HTTP server, driven by an agent that keeps the session cookie. */
const startDemo = async (options: Omit<DemoOptions, 'onEvent' | 'logger'>) => {
  const log = new EventLog()
  const logger = new MemoryLogger()
  const demo = createDemoApp({ ...options, logger, onEvent: log.push })
  const server: Server = createServer(demo.app)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const agent = supertest.agent(`http://127.0.0.1:${port}`)
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await demo.sqreen.close()
  }
  return { ...demo, agent, log, logger, close }
}

const login = (agent: supertest.Agent, email: string, password: string) =>
  agent.post('/login').type('form').send({ email, password })

const eventLines = (logger: MemoryLogger): string[] => logger.lines.filter((l) => l.startsWith('info '))

describe('demo app, automatic user context', () => {
  it('records a failed then a successful login, shows the user, and reports /attack-me against them', async () => {
    const demo = await startDemo({ mode: 'automatic' })
    try {
      const { agent, log } = demo
      await agent.get('/').expect(302).expect('Location', '/login')

      const form = await agent.get('/login').expect(200).expect('Content-Type', /html/)
      assert.match(form.text, /<form method="post" action="\/login">/)
      assert.match(form.text, /<label for="email">/)
      assert.match(form.text, /<label for="password">/)
      assert.doesNotMatch(form.text, /<script/i)

      await login(agent, 'alice@example.com', 'wrong').expect(302).expect('Location', '/login')
      const [failed] = await log.waitFor(1)
      assert.equal(failed?.type, 'login.failed')
      assert.equal(failed?.strategy, 'local')
      assert.equal(failed?.reason, 'invalid_credentials')
      assert.deepEqual(failed?.identity, { login: 'alice@example.com' })
      assert.equal(failed?.ip, '127.0.0.1')
      const retry = await agent.get('/login').expect(200)
      assert.match(retry.text, /<p role="alert">Incorrect e-mail or password\.<\/p>/)

      await login(agent, 'alice@example.com', 'alice-password').expect(302).expect('Location', '/')
      const succeeded = (await log.waitFor(2))[1]
      assert.equal(succeeded?.type, 'login.succeeded')
      assert.equal(succeeded?.strategy, 'local')
      assert.equal(succeeded?.userKey, 'id:1')
      assert.deepEqual(succeeded?.identity, { id: 1, email: 'alice@example.com' })

      const home = await agent.get('/').expect(200)
      assert.match(home.text, /Signed in as <strong>alice@example\.com<\/strong>/)

      await agent.get('/attack-me').expect(200)
      const custom = (await log.waitFor(3))[2]
      assert.equal(custom?.type, 'custom')
      assert.equal(custom?.source, 'sdk')
      assert.equal(custom?.name, 'sql_injection')
      assert.equal(custom?.severity, 'high')
      assert.equal(custom?.userKey, 'id:1')

      await agent.post('/logout').expect(302).expect('Location', '/login')
      await agent.get('/').expect(302).expect('Location', '/login')

      // The session strategy runs on every request above and is never a login.
      assert.deepEqual(
        (await log.settle()).map((e) => e.type),
        ['login.failed', 'login.succeeded', 'custom'],
      )
      const lines = eventLines(demo.logger)
      assert.equal(lines.length, 3)
      assert.match(
        lines[0] ?? '',
        /login\.failed +strategy=local user=login:alice@example\.com reason=invalid_credentials ip=127\.0\.0\.1$/,
      )
      assert.match(lines[1] ?? '', /login\.succeeded strategy=local user=id:1 ip=127\.0\.0\.1$/)
      assert.match(lines[2] ?? '', /custom +name=sql_injection severity=high strategy=- user=id:1 ip=127\.0\.0\.1$/)
    } finally {
      await demo.close()
    }
  })

  it('an empty form is a missing_credentials failure; /attack-me needs a login and reports nothing anonymous', async () => {
    const demo = await startDemo({ mode: 'automatic' })
    try {
      const { agent, log } = demo
      await agent.get('/attack-me').expect(302).expect('Location', '/login')
      await agent.post('/login').type('form').send({}).expect(302).expect('Location', '/login')
      const [failed] = await log.waitFor(1)
      assert.equal(failed?.type, 'login.failed')
      assert.equal(failed?.reason, 'missing_credentials')
      assert.match((await agent.get('/login').expect(200)).text, /<p role="alert">Missing credentials<\/p>/)
      assert.equal((await log.settle()).length, 1)
    } finally {
      await demo.close()
    }
  })

  it('does not need a secret in automatic mode', () => {
    const { sqreen, secretGenerated } = createDemoApp({ mode: 'automatic', logger: new MemoryLogger() })
    assert.equal(secretGenerated, false)
    return sqreen.close()
  })
})

describe('demo app, advanced user context', () => {
  it('no event or log line contains an e-mail local part; the domain appears as anon-<id>@domain', async () => {
    const demo = await startDemo({ mode: 'advanced', secret: SECRET })
    try {
      const { agent, log } = demo
      await login(agent, 'alice@example.com', 'wrong').expect(302).expect('Location', '/login')
      await log.waitFor(1)
      await login(agent, 'bob@example.org', 'wrong').expect(302)
      await log.waitFor(2)
      await login(agent, 'alice@example.com', 'alice-password').expect(302).expect('Location', '/')
      await log.waitFor(3)
      // The application itself knows who is signed in; only the events must not.
      assert.match((await agent.get('/').expect(200)).text, /alice@example\.com/)
      await agent.get('/attack-me').expect(200)
      const events: AuthEvent[] = await log.waitFor(4)
      assert.deepEqual(
        events.map((e) => e.type),
        ['login.failed', 'login.failed', 'login.succeeded', 'custom'],
      )

      const [aliceFailed, bobFailed, succeeded, custom] = events
      assert.deepEqual(succeeded?.identity, { id: 1, email: 'anon-1@example.com' })
      assert.equal(succeeded?.userKey, 'id:1')
      assert.deepEqual(custom?.identity, { id: 1, email: 'anon-1@example.com' })
      assert.equal(custom?.userKey, 'id:1')
      assert.equal(custom?.name, 'sql_injection')
      // The failed login is keyed by a pseudonym that the later success links to Alice.
      assert.deepEqual(Object.keys(aliceFailed?.identity ?? {}), ['loginHash'])
      assert.ok(aliceFailed?.loginKey)
      assert.equal(aliceFailed?.loginKey, succeeded?.loginKey)
      assert.notEqual(bobFailed?.loginKey, aliceFailed?.loginKey)

      // 'Wrong password' is a detection label in alerts; the users' passwords end in -password.
      const leaked = /alice|bob|-password/i
      for (const event of events) assert.doesNotMatch(JSON.stringify(event), leaked)
      const lines = eventLines(demo.logger)
      assert.equal(lines.length, 4)
      for (const line of demo.logger.lines) assert.doesNotMatch(line, leaked)
    } finally {
      await demo.close()
    }
  })

  it('generates a per-process secret when SQREEN_AUTH_SECRET is unset', async () => {
    const saved = process.env.SQREEN_AUTH_SECRET
    delete process.env.SQREEN_AUTH_SECRET
    const first = await startDemo({ mode: 'advanced' })
    const second = await startDemo({ mode: 'advanced' })
    if (saved !== undefined) process.env.SQREEN_AUTH_SECRET = saved
    try {
      assert.equal(first.secretGenerated, true)
      assert.equal(second.secretGenerated, true)
      await login(first.agent, 'alice@example.com', 'wrong').expect(302)
      await login(second.agent, 'alice@example.com', 'wrong').expect(302)
      const [a] = await first.log.waitFor(1)
      const [b] = await second.log.waitFor(1)
      assert.match(a?.loginKey ?? '', /^login:[\w-]{43}$/)
      // A constant "generated" secret would make every demo's pseudonyms reversible by anyone.
      assert.notEqual(a?.loginKey, b?.loginKey)
    } finally {
      await first.close()
      await second.close()
    }
  })
})

describe('formatEvent', () => {
  it('prints one line even when a value holds control characters', () => {
    const line = formatEvent({
      id: '00000000-0000-4000-8000-000000000000',
      type: 'login.failed',
      at: '2025-01-02T03:04:05.000Z',
      source: 'passport',
      mode: 'automatic',
      strategy: 'local',
      reason: 'invalid_credentials',
      identity: {},
      userKey: 'eve\n03:04:05 login.succeeded',
      ip: '203.0.113.9',
      userAgent: null,
    })
    assert.equal(
      line,
      '03:04:05 login.failed    strategy=local user="eve\\n03:04:05 login.succeeded" reason=invalid_credentials ip=203.0.113.9',
    )
  })
})

describe('npm run demo (demo-app/server.ts)', () => {
  const children: ChildProcess[] = []
  after(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  /** Starts the demo as `npm run demo` does, on a free port, with a clean SQREEN_* environment. */
  const spawnDemo = (env: Record<string, string>) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: '0', ...env }
    if (env.SQREEN_MODE === undefined) delete childEnv.SQREEN_MODE
    delete childEnv.SQREEN_AUTH_SECRET
    const { child, exited, stdout, stderr } = spawnTsx('demo-app/server.ts', childEnv, children)
    const waitForStdout = (pattern: RegExp, ms = 20_000): Promise<RegExpMatchArray> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const match = stdout().match(pattern)
          if (!match) return
          cleanup()
          resolve(match)
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`no ${pattern} in stdout within ${ms} ms.\nstdout: ${stdout()}\nstderr: ${stderr()}`))
        }, ms)
        const cleanup = (): void => {
          clearTimeout(timer)
          child.stdout?.off('data', check)
        }
        child.stdout?.on('data', check)
        check()
      })
    const exitWithin = (ms: number) =>
      Promise.race([
        exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms).unref(),
        ),
      ])
    return { child, waitForStdout, exitWithin, stdout, stderr }
  }

  it('prints its URL and the demo users, serves the login form, and exits 0 on SIGTERM', async () => {
    const demo = spawnDemo({})
    const [, base] = await demo.waitForStdout(/Listening on (http:\/\/127\.0\.0\.1:\d+)\/login/)
    const response = await fetch(`${base}/login`)
    assert.equal(response.status, 200)
    assert.match(await response.text(), /<form method="post" action="\/login">/)
    assert.match(demo.stdout(), /user context: automatic/)
    assert.match(demo.stdout(), /alice@example\.com \/ alice-password/)
    assert.match(demo.stdout(), /bob@example\.org \/ bob-password/)

    demo.child.kill('SIGTERM')
    assert.deepEqual(await demo.exitWithin(5000), { code: 0, signal: null })
    assert.equal(demo.stderr(), '')
  })

  it('SQREEN_MODE=advanced: notes the generated secret and prints events without the e-mail', async () => {
    const demo = spawnDemo({ SQREEN_MODE: 'advanced' })
    const [, base] = await demo.waitForStdout(/Listening on (http:\/\/127\.0\.0\.1:\d+)\/login/)
    assert.match(demo.stdout(), /user context: advanced/)
    assert.match(demo.stdout(), /SQREEN_AUTH_SECRET is not set; using a secret generated/)
    const response = await fetch(`${base}/login`, {
      method: 'POST',
      body: new URLSearchParams({ email: 'alice@example.com', password: 'alice-password' }),
      redirect: 'manual',
    })
    assert.equal(response.status, 302)
    assert.equal(response.headers.get('location'), '/')
    const [line] = await demo.waitForStdout(/^.*login\.succeeded.*$/m)
    assert.match(line, /strategy=local user=id:1 ip=127\.0\.0\.1$/)
    assert.doesNotMatch(line, /alice/i)

    demo.child.kill('SIGTERM')
    assert.deepEqual(await demo.exitWithin(5000), { code: 0, signal: null })
  })

  it('refuses a misspelt SQREEN_MODE with a hint and exit code 1', async () => {
    const demo = spawnDemo({ SQREEN_MODE: 'advnced' })
    assert.deepEqual(await demo.exitWithin(20_000), { code: 1, signal: null })
    assert.match(demo.stderr(), /"mode" must be "automatic" or "advanced", got "advnced"\. Did you mean "advanced"\?/)
  })
})
