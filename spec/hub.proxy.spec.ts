/**
 * The dashboard behind a reverse proxy that serves it under another path than the one the
 * application mounts it at (nginx's `location /security/ { proxy_pass http://app/hub/; }`,
 * a Kubernetes ingress's rewrite-target), in a real browser (Debian's Chromium), with the
 * hub told where browsers reach it (`publicPath`). The proxy is a real one on 127.0.0.1 and
 * does what nginx does with a URI in `proxy_pass`: it decodes the path (`%2F` is `/`),
 * merges slashes and resolves `.` and `..` before replacing the prefix, passes the query
 * string as it is, and rewrites neither `Location` headers that are a path nor cookie paths.
 * Before `publicPath`, every redirect sent the browser to `/hub/login`, which the proxy does
 * not serve, and the cookie's `Path=/hub` never came back.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import supertest from 'supertest'
import { sqreenHub } from '../lib/index.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const PUBLIC = '/security'
/** User keys a login name can make: a `/` inside, at the end, with dot segments, markup. */
const KEYS = ['login:victim', 'login:a/b', 'login:victim/', 'login:x/../login:victim', 'login:<b>x</b>']

/** The path as nginx forwards it: `%2F` and `%2E` decoded, slashes merged, dot segments resolved. */
const normalised = (path: string): string => {
  const decoded = path.replace(/%2F/gi, '/').replace(/%2E/gi, '.')
  const out: string[] = []
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') out.pop()
    else out.push(segment)
  }
  return `/${out.join('/')}${decoded.endsWith('/') && out.length > 0 ? '/' : ''}`
}

/** Serves `${PUBLIC}/...` from the hub's `/hub/...`, as nginx's `proxy_pass http://app/hub/;` does. */
const rewritingProxy = async (upstream: string): Promise<{ server: Server; origin: string; paths: string[] }> => {
  const target = new URL(upstream)
  const paths: string[] = []
  const server = createServer((req, res) => {
    const raw = req.url ?? '/'
    paths.push(raw)
    const q = raw.indexOf('?')
    const path = normalised(q === -1 ? raw : raw.slice(0, q))
    const query = q === -1 ? '' : raw.slice(q)
    // nginx, for a prefix location ending with a slash, answers the bare prefix so.
    if (path === PUBLIC) {
      res.writeHead(301, { location: `${PUBLIC}/${query}` }).end()
      return
    }
    if (!path.startsWith(`${PUBLIC}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not served by this proxy')
      return
    }
    const forwarded = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: `/hub/${path.slice(PUBLIC.length + 1)}${query}`,
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

describe('hub behind a proxy that serves it under another path (publicPath)', () => {
  let hub: RunningHub
  let proxy: Awaited<ReturnType<typeof rewritingProxy>>
  let browser: Browser

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's Chromium, as .ci/run does`)
    hub = await startHub({ publicPath: `${PUBLIC}/` }, { mount: '/hub' })
    const start = Date.now() - 60_000
    const events = KEYS.flatMap((userKey, k) =>
      Array.from({ length: 12 }, (_, i) =>
        sampleEvent({ userKey, loginKey: userKey, at: new Date(start + k * 100 + i * 1000).toISOString() }),
      ),
    )
    const seeded = await postBatch(hub.ingestUrl, await signBatch(events, { key: HS_SECRET }))
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

  it("signs in, opens every user's page, keeps the session and signs out, all under the public path", async () => {
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

    // Each user's own page, however its key is made (the proxy decodes paths, not queries).
    for (const key of KEYS) {
      await page.goto(`${proxy.origin}${PUBLIC}/`)
      await page.locator('#riskiest tbody tr a', { hasText: key }).first().click()
      await page.waitForURL(`${proxy.origin}${PUBLIC}/user?key=${encodeURIComponent(key)}`)
      assert.equal(await page.locator('#user-key').innerText(), key)
    }
    // The cookie is sent back under the public path: still signed in after a reload.
    await page.reload()
    assert.equal(await page.locator('#user-key').innerText(), KEYS.at(-1))
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

  it('a crafted URL the proxy decodes into another page still links and posts under the public path', async () => {
    // `/security/login%2F` reaches the hub as `/hub/login/`: its form must still post to /security/login.
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${proxy.origin}${PUBLIC}/login%2F`)
    const action = await page.locator('form').first().getAttribute('action')
    assert.equal(new URL(action ?? '', page.url()).pathname, `${PUBLIC}/login`)
    const refs = page.locator('link[href], script[src], a[href]')
    const count = await refs.count()
    assert.ok(count >= 4, 'icon, stylesheet, script, brand link')
    for (let i = 0; i < count; i++) {
      const ref = (await refs.nth(i).getAttribute('href')) ?? (await refs.nth(i).getAttribute('src')) ?? ''
      assert.ok(new URL(ref, page.url()).pathname.startsWith(`${PUBLIC}/`), ref)
    }
    await context.close()
  })

  it('the cookie and redirects use the public path; without it, the mount path', async () => {
    const signIn = await supertest(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
    assert.equal(signIn.headers.location, `${PUBLIC}/`)
    const cookie = (signIn.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('sqreen_hub='))
    assert.match(cookie ?? '', new RegExp(`; Path=${PUBLIC}(;|$)`))
    // No page at the old path: behind such a proxy `/users/login%3Avictim%2F` arrives as
    // `/users/login:victim/`, and a redirect from it would open another user's page.
    await supertest(hub.app).get('/hub/users/login%3Aa%2Fb').expect(404)
    const direct = await startHub({}, { mount: '/hub' })
    try {
      const res = await supertest(direct.app).get('/hub/').expect(303)
      assert.equal(res.headers.location, '/hub/login')
    } finally {
      await direct.close()
    }
  })

  it('publicPath must be a plain absolute path', () => {
    const options = { key: HS_SECRET, token: HUB_TOKEN }
    for (const bad of [
      '',
      'security',
      '//evil.example',
      '/a/../b',
      '/a/%2e%2E',
      '/a b',
      '/a?x',
      '/a#x',
      '/a;b',
      '/x;Domain=evil.example',
      "/a'b",
      'https://x/y',
      7,
    ]) {
      assert.throws(
        () => sqreenHub({ ...options, publicPath: bad as string }),
        (err: Error & { code?: string }) => err.code === 'ERR_SQREEN_OPTION_TYPE' && /publicPath/.test(err.message),
        String(bad),
      )
    }
    for (const good of ['/', '/security', '/security/', '/a/b-c/%7Eops']) {
      assert.doesNotThrow(() => sqreenHub({ ...options, publicPath: good }).close(), good)
    }
  })
})
