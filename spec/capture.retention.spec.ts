/**
 * What capture keeps of a request once its events are out: nothing. V8's young-generation
 * collector keeps a WeakMap's values alive whether or not their key is (only full
 * collections honour the WeakMap's weakness), so a context left in a WeakMap keyed by the
 * request, pointing back at it, kept the request and all it reaches alive through every
 * young collection until the next full one: in the login bench 8 KB more surviving per
 * request, and a fifth more time in the collector (bench/README). Measured like the bench:
 * two app processes (spec/fixtures/retention-app.ts), one with sqreen-auth, under the same
 * concurrent login load (autocannon, 10 connections); each login request carries 64 KB,
 * so a request kept alive shows as 64 KB more copied.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

/** autocannon ships no types: the part of its API used here (as bench/lib/load.ts does). */
type Autocannon = (options: {
  url: string
  connections: number
  amount: number
  requests: { method: 'POST'; path: string; headers: Record<string, string>; body: string }[]
}) => Promise<{ non2xx: number; '2xx': number }>
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

const root = fileURLToPath(new URL('..', import.meta.url))
const children: ChildProcess[] = []
after(() => {
  for (const child of children) child.kill()
})

const LOGINS = 3000

/** Bytes that survived young collections per login request, in an app with or without sqreen-auth. */
const survivedPerLogin = async (mode: 'plain' | 'observed'): Promise<{ bytes: number; events: number }> => {
  const child = fork(`${root}spec/fixtures/retention-app.ts`, [mode], {
    execArgv: ['--expose-gc', '--import', 'tsx'],
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  children.push(child)
  const next = <T>(): Promise<T> => new Promise((resolve) => child.once('message', (m) => resolve(m as T)))
  const { port } = await next<{ port: number }>()
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const load = (amount: number) =>
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: 10,
      amount,
      requests: [
        { method: 'POST', path: '/login', headers: form, body: 'username=ann&password=right' },
        { method: 'POST', path: '/login', headers: form, body: 'username=ann&password=wrong' },
      ],
    })
  await load(500)
  child.send('start')
  await next()
  const result = await load(LOGINS)
  assert.equal(result.non2xx + result['2xx'], LOGINS, 'every login was answered')
  child.send('stop')
  const { survived, events } = await next<{ survived: number; events: number }>()
  return { bytes: survived / LOGINS, events }
}

describe('capture keeps nothing of a request after its events', () => {
  it('under concurrent logins, as little of each request survives young collections as without sqreen-auth', async () => {
    const plain = await survivedPerLogin('plain')
    const observed = await survivedPerLogin('observed')
    assert.equal(plain.events, 0)
    // Every login observed: the warm-up's and the measured ones.
    assert.equal(observed.events, 500 + LOGINS)
    // Kept alive until a full collection, each request's 64 KB would be copied at least once
    // more (the build before: about 80 KB more per request); the method's own spread is a few KB.
    assert.ok(
      observed.bytes < plain.bytes + 32_768,
      `${Math.round(observed.bytes)} bytes per login request survived young collections with sqreen-auth, ${Math.round(plain.bytes)} without`,
    )
  })
})
