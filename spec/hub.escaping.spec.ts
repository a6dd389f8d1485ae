/**
 * The dashboard renders strings an attacker can choose: a custom event's `name` (a
 * `trackEvent` call fed from a request), identity keys and values, strategy names, user
 * agents, user keys, and an error's name and code. Events carrying
 * `<script>alert(1)</script>`, `"><img src=x onerror=alert(1)>` and `javascript:` in all
 * of them are posted to a real hub; every HTML page (signed in with the token) must show
 * them only escaped (never as tags, attributes or `javascript:` links), the JSON API must
 * return them unchanged as data, and in Chromium (playwright-core) no dialog may open,
 * also after the page refreshed itself in place.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import request from 'supertest'
import type { AuthEvent } from '../lib/index.js'
import { HS_SECRET, HUB_TOKEN, postBatch, type RunningHub, sampleEvent, signBatch, startHub } from './helpers/hub.js'
import { waitUntil } from './helpers/receivers.js'

const key = new TextEncoder().encode(HS_SECRET)
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

const SCRIPT = '<script>alert(1)</script>'
const IMG = '"><img src=x onerror=alert(1)>'
const JS_URL = 'javascript:alert(1)'

/** HTML-escaped as any correct escaping must at least do it (&, <, >, "). */
const escaped = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** A user whose key, identity, events and errors are all attacker-chosen. */
const TARGET = `id:${JS_URL}`
const TARGET_IDENTITY = { id: JS_URL, [SCRIPT]: IMG, [IMG]: SCRIPT, homepage: JS_URL }
/** Another one, brute-forced, whose user key and identity are markup. */
const VICTIM = `login:${IMG}`

const sdkEvent = (name: string, severity: AuthEvent['severity'], at: number): AuthEvent =>
  sampleEvent({
    type: 'custom',
    source: 'sdk',
    strategy: null,
    reason: undefined,
    name,
    severity,
    identity: TARGET_IDENTITY,
    userKey: TARGET,
    loginKey: undefined,
    attempts: undefined,
    status: undefined,
    userAgent: `Agent ${SCRIPT}`,
    at: new Date(at).toISOString(),
  })

const evilEvents = (): AuthEvent[] => {
  const t = Date.now() - 10 * 60_000
  return [
    sdkEvent(SCRIPT, 'critical', t),
    sdkEvent(IMG, 'high', t + 1000),
    sdkEvent(JS_URL, 'low', t + 2000),
    // A failure through a strategy with a hostile name.
    sampleEvent({
      identity: TARGET_IDENTITY,
      userKey: TARGET,
      loginKey: `login:${SCRIPT}`,
      strategy: IMG,
      userAgent: `UA ${IMG}`,
      attempts: [{ strategy: IMG, outcome: 'failed', reason: 'invalid_credentials' }],
      at: new Date(t + 3000).toISOString(),
    }),
    // An infrastructure error whose name and code are markup.
    sampleEvent({
      type: 'login.error',
      reason: undefined,
      status: 500,
      identity: TARGET_IDENTITY,
      userKey: TARGET,
      loginKey: undefined,
      strategy: JS_URL,
      error: { name: SCRIPT, code: IMG },
      attempts: [{ strategy: JS_URL, outcome: 'error' }],
      at: new Date(t + 4000).toISOString(),
    }),
    // A brute force on a user whose key and identity are markup: an alert to list.
    ...Array.from({ length: 11 }, (_, i) =>
      sampleEvent({
        identity: { login: SCRIPT },
        userKey: VICTIM,
        loginKey: VICTIM,
        userAgent: SCRIPT,
        at: new Date(t + 5000 + i * 1000).toISOString(),
      }),
    ),
  ]
}

const seed = async (hub: RunningHub): Promise<void> => {
  const res = await postBatch(hub.ingestUrl, await signBatch(evilEvents(), { key }))
  assert.equal(res.status, 200, JSON.stringify(res.body))
  await waitUntil(() => hub.alerts.length === 2, 'one alert for each user')
}

const signIn = async (hub: RunningHub): Promise<string> => {
  const res = await request(hub.app).post('/hub/login').type('form').send({ token: HUB_TOKEN }).expect(303)
  const cookie = (res.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('sqreen_hub='))
  assert.ok(cookie)
  return cookie.split(';')[0] as string
}

const decodeAttr = (v: string): string =>
  v
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCharCode(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')

/** No markup of the attacker's: no tag, no handler, no style, no javascript: URL, only our one script. */
const assertInert = (html: string, where: string): void => {
  assert.doesNotMatch(html, /<script>alert/i, `${where}: a raw <script>`)
  assert.doesNotMatch(html, /<img\b/i, `${where}: a raw <img>`)
  assert.equal((html.match(/<script\b/gi) ?? []).length, 1, `${where}: only the hub's own script tag`)
  const tags = html.match(/<[a-z][^>]*>/gi) ?? []
  assert.ok(tags.length > 10, `${where}: a real page`)
  for (const tag of tags) {
    assert.doesNotMatch(tag, /\son[a-z]+\s*=/i, `${where}: event handler attribute in ${tag}`)
    assert.doesNotMatch(tag, /\sstyle\s*=/i, `${where}: inline style in ${tag}`)
    for (const [, name, value] of tag.matchAll(/\s(href|src|action|formaction|xlink:href)\s*=\s*"([^"]*)"/gi)) {
      // Browsers ignore control characters and spaces in a URL's scheme ("java\tscript:").
      const url = [...decodeAttr(value ?? '')]
        .filter((c) => c.charCodeAt(0) > 0x20)
        .join('')
        .toLowerCase()
      assert.ok(!url.startsWith('javascript:'), `${where}: ${name}="${value}" is a javascript: URL`)
      assert.ok(!url.startsWith('data:') || url === 'data:,', `${where}: ${name}="${value}"`)
    }
  }
  // An unescaped quote would end an attribute early: every attribute value is one quoted run.
  for (const tag of tags) assert.doesNotMatch(tag, /"[^"\s=>]*"[^\s>/]/, `${where}: broken attribute quoting in ${tag}`)
}

const get = async (hub: RunningHub, path: string, cookie: string, status = 200): Promise<string> => {
  const res = await request(hub.app).get(path).set('Cookie', cookie).expect(status)
  assert.match(String(res.headers['content-type']), /^text\/html/)
  return res.text
}

const api = async (hub: RunningHub, path: string): Promise<any> => {
  const res = await request(hub.app).get(path).set('Authorization', `Bearer ${HUB_TOKEN}`).expect(200)
  // Data, not markup: never sniffed as HTML.
  assert.match(String(res.headers['content-type']), /^application\/json/)
  assert.equal(res.headers['x-content-type-options'], 'nosniff')
  return JSON.parse(res.text)
}

const userPath = (userKey: string): string => `/hub/user?key=${encodeURIComponent(userKey)}`

/** A brute force (12 failures in a minute) against each of `userKeys`, then the overview as a signed-in person sees it. */
const overviewAfter = async (
  hub: RunningHub,
  userKeys: readonly string[],
): Promise<{ overview: string; cookie: string }> => {
  const events = userKeys.flatMap((userKey) =>
    Array.from({ length: 12 }, (_, i) =>
      sampleEvent({ userKey, loginKey: userKey, at: new Date(Date.now() - 60_000 + i * 1000).toISOString() }),
    ),
  )
  const res = await postBatch(hub.ingestUrl, await signBatch(events, { key }))
  assert.equal(res.status, 200, JSON.stringify(res.body))
  const cookie = await signIn(hub)
  return { overview: await get(hub, '/hub/', cookie), cookie }
}

describe('hub dashboard: attacker-chosen strings', () => {
  it('user keys with bidi overrides or zero-width characters show them as U+FFFD, never as a look-alike', async () => {
    const hub = await startHub()
    try {
      // Also the characters Unicode says to display as nothing: a combining grapheme joiner,
      // variation selectors (one of them outside the BMP).
      const keys = [
        'login:\u202emoc.elpmaxe@ecila',
        'login:ali\u200bce@example.com',
        'login:ali\u034fce@example.com',
        'login:alic\ufe0fe@example.com',
        'login:al\u{E0100}ice@example.com',
      ]
      const { overview, cookie } = await overviewAfter(hub, keys)
      for (const invisible of ['\u202e', '\u200b', '\u034f', '\ufe0f', '\u{E0100}']) {
        assert.ok(!overview.includes(invisible), `U+${invisible.codePointAt(0)?.toString(16)} reaches the page`)
      }
      assert.ok(overview.includes('>login:\ufffdmoc.elpmaxe@ecila<'))
      assert.ok(overview.includes('>login:ali\ufffdce@example.com<'))
      assert.ok(overview.includes('>login:alic\ufffde@example.com<'))
      assert.ok(overview.includes('>login:al\ufffdice@example.com<'))
      // The link still opens that user: the key itself, percent-encoded.
      assert.ok(overview.includes('href="/hub/user?key=login%3A%E2%80%AEmoc.elpmaxe%40ecila"'))
      const page = await get(hub, '/hub/user?key=login%3Aali%E2%80%8Bce%40example.com', cookie)
      assert.ok(page.includes('login:ali\ufffdce@example.com'))
    } finally {
      await hub.close()
    }
  })

  it('a user key with a lone surrogate (a login of "\\ud800" in a JSON body) does not take the overview down', async () => {
    const hub = await startHub()
    try {
      const { overview } = await overviewAfter(hub, ['login:lone\uD800'])
      // Linked as UTF-8 would carry it: the half of a pair becomes U+FFFD.
      assert.ok(overview.includes('href="/hub/user?key=login%3Alone%EF%BF%BD"'), 'the link to the user')
      assertInert(overview, 'overview')
    } finally {
      await hub.close()
    }
  })

  it('the overview and user pages show names, identities, strategies and user agents escaped, never as markup', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      const cookie = await signIn(hub)
      const overview = await get(hub, '/hub/', cookie)
      const target = await get(hub, userPath(TARGET), cookie)
      const victim = await get(hub, userPath(VICTIM), cookie)
      const missing = await get(hub, userPath(SCRIPT), cookie, 404)
      for (const [where, html] of Object.entries({ overview, target, victim, missing })) assertInert(html, where)

      // Shown, escaped: the identity (keys and values) in the lists and on the user page.
      for (const [where, html] of Object.entries({ overview, target })) {
        assert.ok(html.includes(escaped(`${SCRIPT}=${IMG}`)), `${where}: identity key ${SCRIPT} and its value`)
        assert.ok(html.includes(escaped(`${IMG}=${SCRIPT}`)), `${where}: identity key ${IMG} and its value`)
        assert.ok(html.includes(escaped(`homepage=${JS_URL}`)), `${where}: a javascript: value, as text`)
        assert.ok(html.includes(escaped(TARGET)), `${where}: the user key`)
      }
      assert.ok(overview.includes(escaped(VICTIM)) && overview.includes(escaped(`login=${SCRIPT}`)))
      // The user key is a path segment of the link, percent-encoded, under the hub's mount path.
      assert.ok(overview.includes(`href="/hub/user?key=${encodeURIComponent(TARGET)}"`), 'the link to the user')
      assert.ok(overview.includes(`href="/hub/user?key=${encodeURIComponent(VICTIM)}"`), 'the link to the victim')

      // The user page's timeline: the custom events' names, the strategy, the user agents.
      for (const name of [SCRIPT, IMG, JS_URL]) {
        assert.ok(target.includes(escaped(name)), `timeline: the event name ${name}`)
      }
      assert.ok(target.includes(`${escaped(SCRIPT)} (critical)`), 'the critical report, named')
      assert.ok(target.includes(`via ${escaped(IMG)}`), 'the strategy')
      assert.ok(target.includes(escaped(`Agent ${SCRIPT}`)), 'the user agent')
      // The ledger's evidence names the event too.
      assert.ok(target.includes(escaped(`name ${SCRIPT}, severity critical`)), 'the detection evidence')
      // The title of the page is the user key.
      assert.ok(target.includes(`<title>${escaped(TARGET)} · sqreen-auth Security Hub</title>`))
      assert.ok(victim.includes(`<h1 id="user-key">${escaped(VICTIM)}</h1>`))
      // The error's name and code are not shown at all (only the event's type is).
      assert.ok(target.includes('Login error'))
    } finally {
      await hub.close()
    }
  })

  it('the JSON API returns the same strings unchanged, as data', async () => {
    const hub = await startHub()
    try {
      await seed(hub)
      const target = await api(hub, `/hub/v1/users/${encodeURIComponent(TARGET)}`)
      assert.equal(target.userKey, TARGET)
      assert.deepEqual(target.identity, TARGET_IDENTITY)
      const names = (target.events as { name?: string }[]).flatMap((e) => (e.name === undefined ? [] : [e.name]))
      assert.deepEqual(names.sort(), [IMG, JS_URL, SCRIPT].sort())
      const strategies = (target.events as { strategy: string | null }[]).map((e) => e.strategy)
      assert.ok(strategies.includes(IMG) && strategies.includes(JS_URL))
      const evidence = (target.entries as { detection: string; evidence?: { name?: string } }[]).find(
        (e) => e.detection === 'attack_critical',
      )?.evidence
      assert.equal(evidence?.name, SCRIPT)

      const list = await api(hub, '/hub/v1/users?sort=score')
      const row = (list.users as { userKey: string; identity: unknown }[]).find((u) => u.userKey === TARGET)
      assert.deepEqual(row?.identity, TARGET_IDENTITY)
      assert.ok((list.users as { userKey: string }[]).some((u) => u.userKey === VICTIM))

      const { alerts } = await api(hub, '/hub/v1/alerts')
      const keys = (alerts as { userKey: string }[]).map((a) => a.userKey).sort()
      assert.deepEqual(keys, [TARGET, VICTIM].sort())
      const victimAlert = (alerts as { userKey: string; identity: unknown }[]).find((a) => a.userKey === VICTIM)
      assert.deepEqual(victimAlert?.identity, { login: SCRIPT })
    } finally {
      await hub.close()
    }
  })

  it('a refused event: the reason does not echo an attacker-chosen field name', async () => {
    const hub = await startHub()
    try {
      const bad = { ...sampleEvent(), [SCRIPT]: 1, [IMG]: 2 }
      const res = await postBatch(hub.ingestUrl, await signBatch([bad], { key }))
      assert.equal(res.status, 422)
      const text = JSON.stringify(res.body)
      assert.ok(!text.includes('<') && !text.includes('onerror'), text)
      assert.match(text, /unknown field/)
      assert.ok(!hub.logger.lines.join('\n').includes('<script'), hub.logger.lines.join('\n'))
    } finally {
      await hub.close()
    }
  })

  it('in Chromium: no dialog opens and no script runs on any page, also after the in-place refresh', async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`)
    const hub = await startHub({}, { helmet: true })
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    try {
      await seed(hub)
      const context = await browser.newContext()
      const page = await context.newPage()
      const dialogs: string[] = []
      const errors: string[] = []
      page.on('dialog', (d) => {
        dialogs.push(d.message())
        void d.dismiss()
      })
      page.on('pageerror', (err) => errors.push(err.message))
      // The hub's refresh is every 5 s: the same pages, refreshing every 150 ms, so the
      // in-place update (DOMParser + replaceWith) runs within the test too; and no CSP.
      page.setDefaultTimeout(5000)
      await page.route('**/hub/**', async (route) => {
        const req = route.request()
        if (req.resourceType() !== 'document' || req.method() !== 'GET' || req.url().endsWith('/login')) {
          await route.continue()
          return
        }
        const res = await route.fetch({ maxRedirects: 0 })
        const body = (await res.text()).replace('data-refresh="5000"', 'data-refresh="150"')
        // Without its Content-Security-Policy, so that escaping alone has to keep scripts out
        // (with it, an injected inline script would be blocked and no dialog could open anyway).
        const headers = { ...res.headers() }
        delete headers['content-security-policy']
        await route.fulfill({ response: res, body, headers })
      })
      await page.goto(`${hub.base}/login`)
      await page.fill('#token', HUB_TOKEN)
      await page.click('button[type=submit]')
      await page.waitForURL(`${hub.base}/`)
      for (const path of ['/', `/user?key=${encodeURIComponent(TARGET)}`, `/user?key=${encodeURIComponent(VICTIM)}`]) {
        // (Loaded again even for the overview: a redirect's target does not go through the route.)
        await page.goto(`${hub.base}${path}`)
        assert.equal(await page.evaluate('document.body.dataset.refresh'), '150')
        assert.equal(
          await page.evaluate('getComputedStyle(document.querySelector(".score")).borderTopLeftRadius'),
          '10px',
          'hub.css applied',
        )
        // Mark the current <main>: once it is replaced, the page has refreshed itself.
        await page.evaluate('document.getElementById("main").dataset.marked = "1"')
        // (Polled with evaluate: waitForFunction's string form needs eval, which a CSP may refuse.)
        const deadline = Date.now() + 3000
        while ((await page.evaluate('document.getElementById("main").dataset.marked')) === '1') {
          assert.ok(Date.now() < deadline, `${path}: the page did not refresh itself`)
          await new Promise((r) => setTimeout(r, 25))
        }
        assert.deepEqual(dialogs, [], `${path}: alert() ran`)
        const text = String(await page.evaluate('document.getElementById("main").textContent'))
        // The strings are there, as text.
        assert.ok(text.includes(path === '/' ? VICTIM : path.includes('javascript') ? SCRIPT : VICTIM), path)
        assert.equal(await page.locator('main img, main script, main iframe').count(), 0, `${path}: injected elements`)
        const onAttrs = await page.evaluate(
          '[...document.querySelectorAll("*")].flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => el.tagName + " " + a.name))',
        )
        assert.deepEqual(onAttrs, [], `${path}: event handler attributes`)
        const jsLinks = await page.evaluate(
          '[...document.querySelectorAll("a[href]")].map((a) => a.href).filter((h) => /^javascript:/i.test(h))',
        )
        assert.deepEqual(jsLinks, [], `${path}: javascript: links`)
      }
      assert.deepEqual(dialogs, [], 'no alert() ran')
      assert.deepEqual(errors, [])
      await context.close()
    } finally {
      await browser.close()
      await hub.close()
    }
  })
})
