/**
 * The hub's views (lib/hub/views.ts): each user's timeline in time order whatever
 * the form of `at` a forwarder writes, a login's earlier failures merged into the
 * user who then logs in with it, and the bounds on users and events per user.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HubViews } from '../lib/hub/views.js'
import type { AuthEvent } from '../lib/index.js'

let n = 0
const event = (
  userKey: string,
  at: string,
  type: AuthEvent['type'] = 'login.failed',
  loginKey?: string,
): AuthEvent => ({
  id: `e${n++}`,
  type,
  at,
  source: 'passport',
  mode: 'advanced',
  strategy: 'local',
  identity: { id: userKey },
  userKey,
  ip: '203.0.113.7',
  userAgent: 'curl/8.5.0',
  ...(type === 'login.failed' ? { reason: 'invalid_credentials' as const } : {}),
  ...(loginKey === undefined ? {} : { loginKey }),
})

const timeline = (views: HubViews, userKey: string): string[] => (views.user(userKey)?.events ?? []).map((e) => e.at)

describe('hub views', () => {
  it('orders a timeline by time when forwarders write the same instants differently', () => {
    const views = new HubViews({ users: 10, eventsPerUser: 10, alerts: 10 })
    views.record(event('id:1', '2030-01-01T09:00:00.000Z'))
    // 08:00 UTC, written with an offset: later as text, earlier in time.
    views.record(event('id:1', '2030-01-01T10:00:00+02:00'))
    assert.deepEqual(timeline(views, 'id:1'), ['2030-01-01T10:00:00+02:00', '2030-01-01T09:00:00.000Z'])
    views.record(event('id:1', '2030-01-01T09:30:00Z'))
    assert.deepEqual(timeline(views, 'id:1'), [
      '2030-01-01T10:00:00+02:00',
      '2030-01-01T09:00:00.000Z',
      '2030-01-01T09:30:00Z',
    ])
  })

  it('merges a login key’s failures into the user who logs in with it, in time order, newest kept', () => {
    const views = new HubViews({ users: 10, eventsPerUser: 4, alerts: 10 })
    views.record(event('id:7', '2030-01-01T08:00:00.000Z', 'login.succeeded'))
    for (const minute of ['01', '03', '05']) views.record(event('login:k', `2030-01-01T08:${minute}:00.000Z`))
    views.record(event('id:7', '2030-01-01T08:02:00.000Z', 'login.succeeded'))
    views.record(event('id:7', '2030-01-01T08:06:00.000Z', 'login.succeeded', 'login:k'))
    assert.equal(views.user('login:k'), undefined, 'the login key is folded into the user')
    assert.deepEqual(timeline(views, 'id:7'), [
      '2030-01-01T08:02:00.000Z',
      '2030-01-01T08:03:00.000Z',
      '2030-01-01T08:05:00.000Z',
      '2030-01-01T08:06:00.000Z',
    ])
    const view = views.user('id:7')
    assert.equal(view?.failed, 3)
    assert.equal(view?.succeeded, 3)
    // An event older than the newest, after a merge, still lands in its place.
    views.record(event('id:7', '2030-01-01T08:04:00.000Z'))
    assert.deepEqual(timeline(views, 'id:7'), [
      '2030-01-01T08:03:00.000Z',
      '2030-01-01T08:04:00.000Z',
      '2030-01-01T08:05:00.000Z',
      '2030-01-01T08:06:00.000Z',
    ])
  })

  it('keeps at most `users` users, the ones seen again first', () => {
    const views = new HubViews({ users: 3, eventsPerUser: 2, alerts: 10 })
    for (const u of ['a', 'b', 'c']) views.record(event(`id:${u}`, '2030-01-01T08:00:00.000Z'))
    views.record(event('id:a', '2030-01-01T08:01:00.000Z')) // a is seen again
    views.record(event('id:d', '2030-01-01T08:02:00.000Z'))
    assert.equal(views.userCount, 3)
    assert.ok(views.user('id:a'), 'a, seen again, is kept')
    assert.equal(views.user('id:b'), undefined, 'b, the oldest not seen again, is evicted')
    assert.ok(views.user('id:c'))
    assert.ok(views.user('id:d'))
  })
})
