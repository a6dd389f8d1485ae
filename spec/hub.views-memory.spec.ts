/**
 * The views keep 50 events for each of 10,000 users by default, so what they keep of an
 * event is multiplied by half a million: of a user agent (up to 512 characters, chosen by
 * whoever sends logins, unique if they like), only what the user page shows. Over real
 * HTTP (what the API returns of it), and in a child process that can force collections,
 * the heap held per kept event with unique 500-character user agents: a cut copy of its
 * own, not a slice that keeps the whole original alive.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { HS_SECRET, HUB_TOKEN, postBatch, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)
const root = fileURLToPath(new URL('..', import.meta.url))
const views = pathToFileURL(`${root}lib/hub/views.ts`).href

describe('hub views: user agents', () => {
  it('keep (and the API returns) the first 120 characters of a user agent, what the page shows', async () => {
    const hub = await startHub()
    try {
      const userAgent = `Mozilla/5.0 ${'x'.repeat(400)} tail`
      const res = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent({ userAgent, userKey: 'id:ua', identity: { id: 'ua' }, loginKey: 'login:ua' })], {
          key,
        }),
      )
      assert.equal(res.status, 200)
      const user = await fetch(`${hub.base}/v1/users/id%3Aua`, { headers: { Authorization: `Bearer ${HUB_TOKEN}` } })
      const body = (await user.json()) as { events: { userAgent: string }[] }
      assert.equal(body.events[0]?.userAgent, userAgent.slice(0, 120))
    } finally {
      await hub.close()
    }
  })

  it('hold under 700 bytes per kept event with unique 500-character user agents (about 850 kept whole, or as a slice of the whole)', () => {
    const script = `
      import { randomUUID } from 'node:crypto'
      const { HubViews } = await import(${JSON.stringify(views)})
      const settle = async () => { for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 10)); gc() } }
      const USERS = 1000, PER = 50
      const v = new HubViews({ users: USERS, eventsPerUser: PER, alerts: 10 })
      await settle()
      const before = process.memoryUsage().heapUsed
      const t0 = Date.now()
      for (let b = 0; b < USERS * PER / 1000; b++) {
        const events = Array.from({ length: 1000 }, (_, i) => {
          const n = b * 1000 + i
          return { id: randomUUID(), type: 'login.failed', at: new Date(t0 + n).toISOString(), source: 'passport',
            mode: 'automatic', strategy: 'local', reason: 'invalid_credentials', identity: { id: n % USERS },
            userKey: 'id:' + (n % USERS), ip: '203.0.113.7', userAgent: ('UA ' + n + ' ' + randomUUID() + ' ').padEnd(500, 'x') }
        })
        // Fresh strings, as the hub gets them from JSON.parse.
        for (const e of JSON.parse(JSON.stringify(events))) v.record(e)
      }
      await settle()
      // Reads the views after measuring: unused, V8 may collect them before (a module's top-level await).
      process.stdout.write(JSON.stringify({ perEvent: (process.memoryUsage().heapUsed - before) / (USERS * PER), users: v.userCount }))
    `
    const { perEvent, users } = JSON.parse(
      execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
      }),
    ) as { perEvent: number; users: number }
    assert.equal(users, 1000)
    assert.ok(perEvent < 700, `${Math.round(perEvent)} bytes held per kept event`)
  })
})
