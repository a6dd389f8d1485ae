/**
 * The users lists (GET /v1/users, the dashboard) cache each user's score and read it
 * again after new events. An event is scored up to `reorderWindow` after its batch is
 * answered; a list read in between caches the score from before it. Scoring the event
 * must mark the user again, so the next read shows the new score, not one up to a
 * minute old. Over real HTTP, with the default reorder window.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import request from 'supertest'
import { attackOn, HS_SECRET, HUB_TOKEN, postBatch, signBatch, startHub } from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)

const listed = async (base: string, sort: 'score' | 'rise'): Promise<{ userKey: string; score: number }[]> => {
  const res = await fetch(`${base}/v1/users?sort=${sort}`, { headers: { Authorization: `Bearer ${HUB_TOKEN}` } })
  assert.equal(res.status, 200)
  return ((await res.json()) as { users: { userKey: string; score: number }[] }).users
}

describe('hub users lists after the reorder window', () => {
  it('show a score raised by events scored after the list was read within the window', async () => {
    const hub = await startHub({}, { reorder: true })
    try {
      const res = await postBatch(hub.ingestUrl, await signBatch([attackOn('id:late')], { key }))
      assert.equal(res.status, 200)
      // Within the window: not scored yet, so nobody to list (and the score 0 is cached).
      assert.deepEqual(await listed(hub.base, 'score'), [])
      assert.deepEqual(await listed(hub.base, 'rise'), [])
      await hub.hub.flush()
      const score = (await hub.hub.risk('id:late')).score
      assert.ok(score > 0, 'the event scores')
      const [row] = await listed(hub.base, 'score')
      assert.equal(row?.userKey, 'id:late', 'the list still shows the score from before the event was scored')
      assert.equal(row?.score, score)
      assert.equal((await listed(hub.base, 'rise'))[0]?.userKey, 'id:late')
    } finally {
      await hub.close()
    }
  })

  it('so does the dashboard', async () => {
    const hub = await startHub({}, { reorder: true })
    try {
      const login = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
      const cookie = String((login.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string
      assert.equal((await postBatch(hub.ingestUrl, await signBatch([attackOn('id:dash')], { key }))).status, 200)
      const early = await request(hub.app).get('/hub/').set('Cookie', cookie).expect(200)
      assert.doesNotMatch(early.text, /id:dash/)
      await hub.hub.flush()
      const later = await request(hub.app).get('/hub/').set('Cookie', cookie).expect(200)
      assert.match(later.text, /id:dash/)
    } finally {
      await hub.close()
    }
  })
})
