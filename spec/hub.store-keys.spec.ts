/**
 * The hub's `secret` option: IP-level state in the hub's store is keyed by HMAC, as
 * `sqreenAuth()` keys it in advanced mode, so a Redis store shared by hubs holds no
 * client address in any key or value; without it the address is the key (shown here,
 * so the check can fail). Scoring is the same either way. Real Redis, real HTTP.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { type AuthEvent, RedisStore, SqreenAuthError, sqreenHub } from '../lib/index.js'
import { MemoryLogger } from './helpers/apps.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'
import { dropKeys, inspector, keysUnder, REDIS_URL, testPrefix } from './helpers/redis.js'

const key = new TextEncoder().encode(HS_SECRET)
const SECRET = 'hub-ip-keying-secret-0123456789'
const ADDRESSES = ['203.0.113.7', '198.51.100.20', '2001:db8:1234:5600::1']

/** A brute force on one login from three addresses (one IPv6), then a success of another user. */
const attack = (): AuthEvent[] => {
  const start = Date.now() - 60_000
  const at = (i: number): string => new Date(start + i * 1000).toISOString()
  const failures = Array.from({ length: 24 }, (_, i) => sampleEvent({ ip: ADDRESSES[i % ADDRESSES.length], at: at(i) }))
  const success = sampleEvent({
    type: 'login.succeeded',
    reason: undefined,
    status: 200,
    attempts: [{ strategy: 'local', outcome: 'succeeded' }],
    identity: { id: 1 },
    userKey: 'id:1',
    loginKey: 'login:one',
    ip: '198.51.100.20',
    at: at(30),
  })
  return [...failures, success]
}

interface Scored {
  readonly keys: string[]
  readonly values: string[]
  readonly ledger: [string, number][]
}

/** Posts the attack to a hub on a RedisStore of its own prefix; what the store then holds. */
const scoreOnRedis = async (admin: Redis, secret: string | undefined): Promise<Scored> => {
  const prefix = testPrefix(`hub-keys-${secret ? 'keyed' : 'plain'}`)
  const store = new RedisStore({ url: REDIS_URL, prefix, logger: new MemoryLogger() })
  let hub: RunningHub | undefined
  try {
    hub = await startHub({ store, ...(secret ? { secret } : {}) })
    const res = await postBatch(hub.ingestUrl, await signBatch(attack(), { key }))
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.accepted, 25)
    const risk = await hub.hub.risk('login:victim')
    const keys = await keysUnder(admin, prefix)
    const values: string[] = []
    for (const k of keys) values.push((await admin.getBuffer(k))?.toString('latin1') ?? '')
    return { keys, values, ledger: risk.entries.map((e) => [e.detection, e.points]) }
  } finally {
    await hub?.close()
    await store.close()
    await dropKeys(admin, prefix)
  }
}

describe('sqreenHub({ secret }): IP state keyed by HMAC in the store', () => {
  let admin: Redis
  before(async () => {
    admin = await inspector()
  })
  after(() => admin.disconnect())

  it('holds no client address in any key or value with a secret, and scores the same as without', async () => {
    const keyed = await scoreOnRedis(admin, SECRET)
    const plain = await scoreOnRedis(admin, undefined)

    // Without a secret the addresses are the keys: the check below is able to fail.
    assert.ok(
      plain.keys.some((k) => k.includes('{ip:203.0.113.7}')),
      `plain keys: ${plain.keys.join(' ')}`,
    )
    assert.ok(plain.keys.some((k) => k.includes('2001:db8:1234:5600')))

    const ipKeys = keyed.keys.filter((k) => k.includes('{ip:~'))
    assert.equal(ipKeys.length, 3, `one keyed IP per address: ${keyed.keys.join(' ')}`)
    for (const text of [...keyed.keys, ...keyed.values]) {
      for (const address of [...ADDRESSES, '2001:db8:1234:5600']) {
        assert.ok(!text.includes(address), `"${address}" found in the store: ${text.slice(0, 200)}`)
      }
    }
    // Keying changes where IP state lives, not what it counts.
    assert.ok(keyed.ledger.some(([d]) => d === 'brute_force' || d === 'distributed_guessing'))
    assert.deepEqual(keyed.ledger, plain.ledger)
  })

  it('refuses a secret that is not a string or Buffer of at least 16 bytes, at setup', () => {
    const base = { key: HS_SECRET, token: HUB_TOKEN, logger: new MemoryLogger() }
    for (const secret of ['short', Buffer.alloc(8), 42, { bytes: 32 }]) {
      assert.throws(
        () => sqreenHub({ ...base, secret: secret as string }),
        (err: unknown) =>
          err instanceof SqreenAuthError &&
          (err.code === 'ERR_SQREEN_SECRET' || err.code === 'ERR_SQREEN_OPTION_TYPE') &&
          err.message.includes('"secret"'),
      )
    }
    const hub = sqreenHub({ ...base, secret: Buffer.alloc(16, 7) })
    return hub.close()
  })
})
