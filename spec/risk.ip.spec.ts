/**
 * IP facts: the prefix IP-level state is counted under, its store key, and what
 * alerts show. IPv4 addresses are recognised by a hand-written scan (it runs on
 * nearly every event), so it is checked against Node's own `isIPv4` over
 * generated strings, near-misses included.
 */
import assert from 'node:assert/strict'
import { isIPv4 } from 'node:net'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { loginPseudonym } from '../lib/identity/pseudonym.js'
import { displayCacheSize, displayIp, ipFacts, ipKey, keyedIpRef } from '../lib/risk/ip.js'

const octet = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map(String),
  fc.integer({ min: 256, max: 9999 }).map(String),
  fc.integer({ min: 0, max: 99 }).map((n) => `0${n}`),
  fc.constantFrom('', ' 1', '1 ', 'a', '-1', '+1', '1e1', '0x1'),
)
const dotted = fc.array(octet, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('.'))

describe('IP facts', () => {
  it('shows the right /24 for every address, past the bound of the shared display strings', () => {
    // More networks than the display cache holds, twice over: answers stay right when it is cleared.
    for (let pass = 0; pass < 2; pass++) {
      for (let n = 0; n < 10_000; n++) {
        const network = `10.${n >> 8}.${n & 255}`
        assert.equal(displayIp(`${network}.${1 + (n % 250)}`), `${network}.0/24`)
        assert.ok(displayCacheSize() <= 4_096, `${displayCacheSize()} display strings cached`)
      }
    }
    assert.ok(displayCacheSize() > 0, 'the strings are cached')
  })

  it('recognises exactly the IPv4 addresses node:net does', () => {
    fc.assert(
      fc.property(fc.oneof(dotted, fc.string({ maxLength: 16 })), (candidate) => {
        const facts = ipFacts(candidate)
        if (isIPv4(candidate)) {
          assert.equal(facts?.prefix, candidate)
          assert.equal(facts?.key, `ip:${candidate}`)
          assert.equal(facts?.display, `${candidate.split('.').slice(0, 3).join('.')}.0/24`)
        } else if (facts !== undefined) {
          // Not IPv4: only an IPv6 address may still have facts, never a dotted near-miss.
          assert.ok(candidate.includes(':'), `${JSON.stringify(candidate)} was taken for an address`)
        }
      }),
      { numRuns: 5_000 },
    )
  })

  it('counts IPv6 by /56, unmaps IPv4-mapped addresses, and shows /24 or /56', () => {
    assert.deepEqual(
      { prefix: ipKey('2001:db8:abcd:12ff::1'), display: displayIp('2001:db8:abcd:12ff::1') },
      { prefix: '2001:db8:abcd:1200::/56', display: '2001:db8:abcd:1200::/56' },
    )
    assert.equal(ipKey('2001:db8:abcd:1234:5678::9'), ipKey('2001:db8:abcd:12ee::'), 'one /56, one key')
    assert.equal(ipFacts('::ffff:192.0.2.77')?.key, 'ip:192.0.2.77')
    assert.equal(displayIp('::FFFF:192.0.2.77'), '192.0.2.0/24')
    assert.equal(displayIp('203.0.113.9'), '203.0.113.0/24')
    for (const bad of [null, '', 'localhost', '1.2.3', '1.2.3.4.5', '01.2.3.4', '::ffff:1.2.3.256', '2001:db8::g']) {
      assert.equal(ipFacts(bad), undefined, `no facts for ${JSON.stringify(bad)}`)
      assert.equal(displayIp(bad), undefined)
    }
  })

  it('advanced mode: keyed IP refs are stable per address, differ by secret, hold no address, and are not login keys', () => {
    const secret = Buffer.from('advanced-mode-secret-0123456789')
    const ref = keyedIpRef(secret)
    const facts = ipFacts('203.0.113.7') as NonNullable<ReturnType<typeof ipFacts>>
    const a = ref(facts)
    assert.match(a.key, /^ip:~[A-Za-z0-9_-]{22}$/)
    assert.equal(a.key, `ip:~${a.member}`)
    assert.deepEqual(keyedIpRef(secret)(facts), a, 'the same address, the same key, in any process')
    assert.notEqual(keyedIpRef(Buffer.from('another-secret-of-enough-length'))(facts).key, a.key)
    assert.notEqual(ref(ipFacts('203.0.113.8') as typeof facts).key, a.key)
    assert.ok(!a.key.includes('203.0.113'))
    // Not the login key of a login typed as the address (or as its store key), which events and the hub show.
    for (const typed of ['203.0.113.7', 'ip:203.0.113.7']) {
      assert.ok(!loginPseudonym(secret, typed).startsWith(a.member), typed)
    }
  })
})
