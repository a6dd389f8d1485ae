/**
 * What the hub keeps of the events it scores: its views hold 50 events per user, and
 * `JSON.parse` gives each event its own copy of every string. A user agent repeated over
 * thousands of kept events must be kept once (lib/hub/interner.ts), or a busy hub holds
 * tens of megabytes of copies of a handful of values. Measured in a child process, which
 * can force collections (--expose-gc), over real HTTP against the built package.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = pathToFileURL(`${root}dist/index.js`).href

const script = `
  import { once } from 'node:events'
  import { randomUUID } from 'node:crypto'
  import express from 'express'
  import { FlattenedSign } from 'jose'
  const { sqreenHub } = await import(${JSON.stringify(dist)})
  const KEY = 'hub-memory-spec-secret-0123456789abcdefghijkl'
  const settle = async () => { for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 10)); gc() } }
  // 10,000 events over 1,000 users: the views keep all of them (10 per user).
  const run = async (userAgent, strategy = 'local') => {
    const hub = sqreenHub({ key: KEY, token: 'hub-memory-spec-token-0123456789abcdefghij', reorderWindow: 0,
      onAlert() {}, logger: { warn() {}, error(m) { process.stderr.write(m + '\\n') } } })
    const app = express()
    app.use('/hub', hub)
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = 'http://127.0.0.1:' + server.address().port + '/hub/v1/events'
    await settle()
    const before = process.memoryUsage().heapUsed
    for (let b = 0; b < 20; b++) {
      const now = Math.floor(Date.now() / 1000)
      const events = Array.from({ length: 500 }, (_, i) => {
        const u = (b * 500 + i) % 1000
        return { id: randomUUID(), type: 'login.succeeded', at: new Date().toISOString(), source: 'passport',
          mode: 'automatic', strategy, identity: { id: u }, userKey: 'id:' + u, ip: '198.51.100.' + (i % 200),
          userAgent, status: 200 }
      })
      const body = JSON.stringify({ v: 2, iat: now, exp: now + 60, jti: randomUUID(), dropped: 0, events })
      const jws = await new FlattenedSign(new TextEncoder().encode(body))
        .setProtectedHeader({ alg: 'HS256', typ: 'sqreen-auth-batch', b64: false, crit: ['b64'] })
        .sign(new TextEncoder().encode(KEY))
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/vnd.sqreen-auth.batch+json',
        'sqreen-signature': jws.protected + '..' + jws.signature } })
      const answer = await res.json()
      if (res.status !== 200 || answer.accepted !== 500) throw new Error('hub answered ' + res.status + ' ' + JSON.stringify(answer).slice(0, 300))
    }
    await settle()
    const kept = process.memoryUsage().heapUsed - before
    server.close()
    await hub.close()
    return kept
  }
  // A first hub pays what is loaded once per process (the disposable-domain list, compiled code).
  await run('curl/8.5.0')
  const long = await run('Mozilla/5.0 (X11; Linux x86_64) ' + 'x'.repeat(450) + ' Firefox/125.0')
  const short = await run('curl/8.5.0')
  const longStrategy = await run('curl/8.5.0', 'corporate-sso-' + 's'.repeat(100))
  console.log(JSON.stringify({ long, short, longStrategy }))
`

describe('hub memory', () => {
  it('keeps a long user agent or strategy name repeated over 10,000 kept events once, not once per event', () => {
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    })
    const { long, short, longStrategy } = JSON.parse(out.trim()) as {
      long: number
      short: number
      longStrategy: number
    }
    // A copy per event would be 10,000 x about 500 B = 5 MB more with the long user agent.
    assert.ok(short > 0, `the views keep something (${short} B)`)
    assert.ok(
      long - short < 1_500_000,
      `a 500-character user agent on 10,000 kept events costs ${long - short} B more than a short one`,
    )
    // Strategy names are kept once too: a copy per event would be 10,000 x about 130 B.
    assert.ok(
      longStrategy - short < 500_000,
      `a 114-character strategy name on 10,000 kept events costs ${longStrategy - short} B more than "local"`,
    )
  })
})
