/**
 * The dashboard behind a reverse proxy that serves it under another path than the one the
 * application mounts it at (nginx's `location /security/ { proxy_pass http://app/hub/; }`,
 * a Kubernetes ingress's rewrite-target), in a real browser (Debian's Chromium). The proxy
 * is a real one on 127.0.0.1 that, like nginx by default, rewrites neither `Location`
 * headers that are a path nor cookie paths. Before the hub's links, redirects and cookie
 * became relative, the browser was sent to `/hub/login`, which the proxy does not serve.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import supertest from 'supertest'
import {
  HS_SECRET,
  HUB_TOKEN,
  postBatch,
  type RunningHub,
  resolvedFrom,
  sampleEvent,
  signBatch,
  startHub,
} from './helpers/hub.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const PUBLIC = '/security'

/** Serves `${PUBLIC}/...` from the hub's `/hub/...`, passing everything else through unchanged. */
const rewritingProxy = async (upstream: string): Promise<{ server: Server; origin: string; paths: string[] }> => {
  const target = new URL(upstream)
  const paths: string[] = []
  const server = createServer((req, res) => {
    const url = req.url ?? '/'
    paths.push(url)
    // nginx, for a prefix location ending with a slash, answers the bare prefix so.
    if (url === PUBLIC || url.startsWith(`${PUBLIC}?`)) {
      res.writeHead(301, { location: `${PUBLIC}/${url.slice(PUBLIC.length)}` }).end()
      return
    }
    if (!url.startsWith(`${PUBLIC}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not served by this proxy')
      return
    }
    const forwarded = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: `/hub/${url.slice(PUBLIC.length + 1)}`,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    forwarded.on('error', () => res.writeHead(502).end())
    req.pipe(forwarded)
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths }
}

describe('hub behind a proxy that serves it under another path', () => {
  let hub: RunningHub
  let proxy: Awaited<ReturnType<typeof rewritingProxy>>
  let browser: Browser

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's Chromium, as .ci/run does`)
    hub = await startHub({}, { mount: '/hub' })
    const start = Date.now() - 60_000
    const guesses = Array.from({ length: 12 }, (_, i) =>
      sampleEvent({ userKey: 'login:victim', loginKey: 'login:victim', at: new Date(start + i * 1000).toISOString() }),
    )
    const seeded = await postBatch(hub.ingestUrl, await signBatch(guesses, { key: HS_SECRET }))
    assert.equal(seeded.status, 200, JSON.stringify(seeded.body))
    proxy = await rewritingProxy(hub.origin)
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  })

  after(async () => {
    await browser?.close()
    proxy?.server.closeAllConnections()
    await new Promise<void>((resolve) => (proxy ? proxy.server.close(() => resolve()) : resolve()))
    await hub?.close()
  })

  it('signs in, browses, keeps the session and signs out, all under the public path', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    const problems: string[] = []
    page.on('response', (res) => {
      if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${new URL(res.url()).pathname}`)
    })
    page.on('pageerror', (err) => problems.push(err.message))
    const at = (): string => new URL(page.url()).pathname

    // The bare public path: the proxy adds the slash, the hub sends people to sign in.
    await page.goto(`${proxy.origin}${PUBLIC}`)
    assert.equal(at(), `${PUBLIC}/login`)
    await page.fill('#token', HUB_TOKEN)
    await page.click('button[type=submit]')
    await page.waitForURL(`${proxy.origin}${PUBLIC}/`)
    // The stylesheet came through the proxy and applies.
    assert.equal(await page.evaluate('getComputedStyle(document.querySelector(".score")).borderTopLeftRadius'), '10px')

    await page.locator('#riskiest tbody tr', { hasText: 'login:victim' }).locator('a').click()
    await page.waitForURL(`${proxy.origin}${PUBLIC}/users/login%3Avictim`)
    assert.equal(await page.locator('#user-key').innerText(), 'login:victim')
    // The cookie is sent back under the public path: still signed in after a reload.
    await page.reload()
    assert.equal(at(), `${PUBLIC}/users/login%3Avictim`)
    await page.locator('a', { hasText: 'Overview' }).first().click()
    await page.waitForURL(`${proxy.origin}${PUBLIC}/`)

    await page.click('form.logout button')
    await page.waitForURL(`${proxy.origin}${PUBLIC}/login`)
    await page.goto(`${proxy.origin}${PUBLIC}/`)
    assert.equal(at(), `${PUBLIC}/login`, 'signed out for real')

    assert.deepEqual(problems, [])
    const astray = proxy.paths.filter((p) => !p.startsWith(PUBLIC))
    assert.deepEqual(astray, [], 'the browser never left the public path')
    await context.close()
  })

  it('without a proxy, the bare mount path redirects to the root with its slash (query kept)', async () => {
    const bare = await supertest(hub.app).get('/hub?x=1').expect(301)
    assert.equal(resolvedFrom('/hub?x=1', bare.headers.location), '/hub/?x=1')
    const page = await supertest(hub.app).get('/hub/').expect(303)
    assert.equal(resolvedFrom('/hub/', page.headers.location), '/hub/login')
    const user = await supertest(hub.app).get('/hub/users/login%3Avictim').expect(303)
    assert.equal(resolvedFrom('/hub/users/login%3Avictim', user.headers.location), '/hub/login')
  })
})
