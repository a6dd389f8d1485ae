/**
 * `npm run demo` with its Security Hub, and `npm run demo:attack` against it, as
 * processes, the way a newcomer runs them: the demo prints the hub's URL and token;
 * the attack script's brute force and credential stuffing reach the hub through
 * the app's own forwarder; alice's and bob's scores rise past the alert threshold
 * and two alerts fire within seconds; the dashboard wants a sign-in.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { waitUntil } from './helpers/receivers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const TOKEN = 'demo-hub-spec-token-0123456789abcdefghijk'

const run = (script: string, env: Record<string, string>) => {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  delete childEnv.NODE_TEST_CONTEXT
  delete childEnv.SQREEN_MODE
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = { stdout: '', stderr: '' }
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out.stdout += c
  })
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    out.stderr += c
  })
  // Bounded, so a process that does not end fails the test instead of hanging it.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not exit within 30 s`)), 30_000)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
  exited.catch(() => {})
  return { child, out, exited }
}

describe('npm run demo + npm run demo:attack', () => {
  const children: ChildProcess[] = []
  after(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  it('prints the hub URL and token; the attack raises alice and bob above 10 and fires two alerts', async () => {
    const demo = run('demo-app/server.ts', { PORT: '0', SQREEN_HUB_TOKEN: TOKEN })
    children.push(demo.child)
    await waitUntil(() => /Listening on http/.test(demo.out.stdout), `the demo to listen: ${demo.out.stderr}`, 20_000)
    const base = /Listening on (http:\/\/127\.0\.0\.1:\d+)\/login/.exec(demo.out.stdout)?.[1] as string
    assert.match(demo.out.stdout, new RegExp(`Security Hub: ${base}/hub/`))
    assert.match(demo.out.stdout, new RegExp(`token: ${TOKEN} \\(from SQREEN_HUB_TOKEN\\)`))
    assert.match(demo.out.stdout, /npm run demo:attack/)

    // The dashboard is not open to anyone.
    const anonymous = await fetch(`${base}/hub/`, { redirect: 'manual' })
    assert.equal(anonymous.status, 303)
    assert.equal(anonymous.headers.get('location'), '/hub/login')

    const started = Date.now()
    const attack = run('demo-app/attack.ts', { DEMO_URL: base, SQREEN_HUB_TOKEN: TOKEN })
    children.push(attack.child)
    assert.deepEqual(await attack.exited, { code: 0, signal: null }, attack.out.stderr)
    assert.ok(Date.now() - started < 60_000, 'within a minute')
    const { stdout } = attack.out
    assert.match(stdout, /1\/2 Brute force: 15 wrong passwords for alice@example\.com/)
    assert.match(stdout, /2\/2 Credential stuffing: 40 leaked/)
    assert.match(stdout, /55 login attempts sent, 1 succeeded/)
    const score = (key: string): number => Number(new RegExp(`${key}\\s+([\\d.]+)`).exec(stdout)?.[1] ?? 0)
    assert.ok(score('login:alice@example\\.com') > 10, stdout)
    assert.ok(score('id:2') > 10, stdout)
    assert.match(stdout, /Alerts raised: 2/)
    // The alerts were also written to the demo's console (no channel configured: the log channel).
    await waitUntil(() => (demo.out.stderr.match(/User risk rose by/g) ?? []).length === 2, 'two alerts logged')

    demo.child.kill('SIGTERM')
    assert.deepEqual(await demo.exited, { code: 0, signal: null })
  })

  it('the attack script explains itself when no demo is running', async () => {
    const attack = run('demo-app/attack.ts', { DEMO_URL: 'http://127.0.0.1:9' })
    children.push(attack.child)
    assert.deepEqual(await attack.exited, { code: 1, signal: null })
    assert.match(attack.out.stderr, /Is the demo running \(npm run demo\) at http:\/\/127\.0\.0\.1:9\?/)
  })
})
