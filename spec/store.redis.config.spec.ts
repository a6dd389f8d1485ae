/**
 * The Redis store under server configurations a team meets in production, each on a
 * redis-server of the spec's own: a write pause (what FAILOVER issues) is one outage, said
 * once, and over only when a batch runs again; an eviction policy that would drop live
 * state is warned about once; a refused script (an ACL) is logged with the reply's code.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createDiagnostics } from '../lib/diagnostics.js'
import { RedisStore, type StoreOp } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import { inspector, RedisServer } from './helpers/redis.js'

const hit: StoreOp = { op: 'hit', key: 'u', field: 'hits', add: true, since: 0, ttl: 60_000 }
const lines = (logger: MemoryLogger, kind: string) => logger.lines.filter((l) => l.includes(kind))

describe('RedisStore: server configurations', () => {
  it('a write pause (CLIENT PAUSE WRITE, as FAILOVER does) is one outage, over when a batch runs again', async () => {
    const server = await RedisServer.start()
    const admin = await inspector(server.url)
    const logger = new MemoryLogger()
    const store = new RedisStore({ url: server.url, timeout: 300, logger })
    try {
      await store.run([hit], Date.now())
      // Writes wait; the ready check (INFO) and PING do not: the store reconnects at once, and
      // used to count a new outage (and log two lines) each time its call timed out again.
      await admin.call('CLIENT', 'PAUSE', '2500', 'WRITE')
      const until = Date.now() + 3_500
      while (Date.now() < until) {
        await store.run([hit], Date.now()).catch(() => {})
        await new Promise((r) => setTimeout(r, 100))
      }
      // Then a batch runs again (the pause has ended).
      let ran = false
      for (const deadline = Date.now() + 5_000; !ran && Date.now() < deadline; ) {
        ran = await store.run([hit], Date.now()).then(
          () => true,
          () => false,
        )
        if (!ran) await new Promise((r) => setTimeout(r, 100))
      }
      assert.ok(ran, 'a batch ran after the pause')
      assert.equal(store.stats().outages, 1, logger.lines.join('\n'))
      assert.equal(lines(logger, 'redis_unavailable').length, 1, logger.lines.join('\n'))
      assert.equal(lines(logger, 'redis_available').length, 1, logger.lines.join('\n'))
      assert.match(lines(logger, 'redis_available')[0] ?? '', /works again after [\d.]+ s; \d+ batches failed/)
    } finally {
      await store.close()
      admin.disconnect()
      await server.stop()
    }
  })

  it('warns once when the server may evict keys (maxmemory-policy), never with noeviction', async () => {
    const server = await RedisServer.start()
    const admin = await inspector(server.url)
    try {
      for (const [policy, warned] of [
        ['volatile-lru', 1],
        ['allkeys-lru', 1],
        ['noeviction', 0],
      ] as const) {
        await admin.config('SET', 'maxmemory-policy', policy)
        const logger = new MemoryLogger()
        const store = new RedisStore({ url: server.url, logger })
        try {
          await store.run([hit], Date.now())
          await store.run([hit], Date.now())
          await new Promise((r) => setTimeout(r, 50))
          const said = lines(logger, 'redis_eviction_policy')
          assert.equal(said.length, warned, `${policy}: ${logger.lines.join('\n')}`)
          if (warned) assert.match(said[0] ?? '', new RegExp(`"${policy}".*noeviction`))
        } finally {
          await store.close()
        }
      }
    } finally {
      admin.disconnect()
      await server.stop()
    }
  })

  it('a script refused by an ACL is logged with the reply code (NOPERM), not only "ReplyError"', async () => {
    const server = await RedisServer.start()
    const admin = await inspector(server.url)
    await admin.call('ACL', 'SETUSER', 'limited', 'on', '>limited-pw', '~*', '+@all', '-evalsha', '-eval', '-script')
    const logger = new MemoryLogger()
    const store = new RedisStore({ url: `redis://limited:limited-pw@127.0.0.1:${server.port}`, logger })
    const diag = createDiagnostics(logger)
    try {
      const err = await store.run([hit], Date.now()).then(
        () => undefined,
        (e: unknown) => e,
      )
      assert.ok(err instanceof Error)
      diag.error('risk_failed', 'a scoring write failed', err)
      assert.match(lines(logger, 'risk_failed')[0] ?? '', /ReplyError \(NOPERM\)/)
      // The rest of the reply (which names commands here, and could carry anything) is not logged.
      assert.doesNotMatch(lines(logger, 'risk_failed')[0] ?? '', /permissions|evalsha/i)
    } finally {
      await store.close()
      admin.disconnect()
      await server.stop()
    }
  })
})
