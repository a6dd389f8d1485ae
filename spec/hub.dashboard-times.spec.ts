/**
 * Times on the dashboard are shown in UTC, and forwarders may write an event's time with
 * an offset (`...T02:41:32+05:00`, which is 21:41:32 UTC the day before): the page must
 * show the instant in UTC, not the offset's wall clock labelled UTC. Over real HTTP, signed in.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import request from 'supertest'
import { HS_SECRET, HUB_TOKEN, postBatch, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const key = new TextEncoder().encode(HS_SECRET)

/** `instant` written as the wall clock of UTC+05:00, as a forwarder in that zone might. */
const atPlus5 = (instant: number): string => `${new Date(instant + 5 * 3_600_000).toISOString().slice(0, 19)}+05:00`

describe('hub dashboard times', () => {
  it('shows an event time written with an offset as its UTC instant', async () => {
    const hub = await startHub()
    try {
      // Three hours ago, whole seconds: the offset form is then exactly this instant.
      const instant = Math.floor((Date.now() - 3 * 3_600_000) / 1000) * 1000
      const at = atPlus5(instant)
      const utc = new Date(instant).toISOString()
      const res = await postBatch(
        hub.ingestUrl,
        await signBatch([sampleEvent({ at, userKey: 'id:tz', identity: { id: 'tz' }, loginKey: 'login:tz' })], { key }),
      )
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const login = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
      const cookie = String((login.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string
      const page = await request(hub.app).get('/hub/user?key=id%3Atz').set('Cookie', cookie).expect(200)
      const shown = `${utc.replace('T', ' ').slice(0, 19)} UTC`
      assert.ok(page.text.includes(`<time datetime="${utc}">${shown}</time>`), `no ${shown} in the timeline`)
      const wallClock = `${at.replace('T', ' ').slice(0, 19)} UTC`
      assert.ok(!page.text.includes(wallClock), `the +05:00 wall clock is labelled UTC: ${wallClock}`)
    } finally {
      await hub.close()
    }
  })
})
