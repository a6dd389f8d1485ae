/**
 * LoginLinks: which user a login key belongs to once a login with it succeeded.
 * Bounded, with a second chance for links used since they were made (CLOCK), and a
 * user logging in again with the same identity keeps the link that is there.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LoginLinks } from '../lib/identity/links.js'

describe('LoginLinks', () => {
  it('answers the linked user of a login key, and nothing for an unknown one', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1 })
    const linked = links.get('login:a')
    assert.equal(linked?.userKey, 'id:1')
    assert.deepEqual(linked?.identity, { id: 1 })
    assert.equal(links.get('login:b'), undefined)
  })

  it('keeps the link in place when the same user logs in again with an equal identity', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.com' })
    const first = links.get('login:a')
    // A fresh but equal identity object, as every login builds one.
    links.set('login:a', 'id:1', { email: 'anon-1@example.com', id: 1 })
    assert.equal(links.get('login:a'), first)
  })

  it('replaces the link when the identity or the user changed', () => {
    const links = new LoginLinks(10)
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.com' })
    links.set('login:a', 'id:1', { id: 1, email: 'anon-1@example.org' })
    assert.deepEqual(links.get('login:a')?.identity, { id: 1, email: 'anon-1@example.org' })
    links.set('login:a', 'id:1', { id: 1 }) // a field fewer
    assert.deepEqual(links.get('login:a')?.identity, { id: 1 })
    links.set('login:a', 'id:1', { id: 1, team: 'x' }) // a field more
    assert.deepEqual(links.get('login:a')?.identity, { id: 1, team: 'x' })
    links.set('login:a', 'id:2', { id: 1, team: 'x' })
    assert.equal(links.get('login:a')?.userKey, 'id:2')
  })

  it('past its bound, forgets the oldest link not used since, and keeps a used one', () => {
    const links = new LoginLinks(3)
    links.set('login:a', 'id:a', { id: 'a' })
    links.set('login:b', 'id:b', { id: 'b' })
    links.set('login:c', 'id:c', { id: 'c' })
    assert.ok(links.get('login:a'), 'a is used: it gets a second chance')
    links.set('login:d', 'id:d', { id: 'd' })
    assert.ok(links.get('login:a'), 'a was used, so it stays')
    assert.equal(links.get('login:b'), undefined, 'b, the oldest unused, is forgotten')
    assert.ok(links.get('login:c'))
    assert.ok(links.get('login:d'))
  })

  it('stays within its bound when every link is used, and keeps the one just made', () => {
    const links = new LoginLinks(50)
    for (let i = 0; i < 5_000; i++) {
      links.set(`login:${i}`, `id:${i}`, { id: i })
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
    for (let i = 0; i < 10; i++) links.set(`login:regular${i}`, `id:r${i}`, { id: `r${i}` })
    for (let n = 0; n < 10_000; n++) {
      links.set(`login:once${n}`, `id:o${n}`, { id: `o${n}` })
      if (n % 20 === 0) for (let i = 0; i < 10; i++) assert.ok(links.get(`login:regular${i}`), `regular ${i} at ${n}`)
    }
  })
})
