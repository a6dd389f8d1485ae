/**
 * The dashboard as a person sees it, in a real browser (Debian's Chromium driven by
 * playwright-core): the demo app with its hub under helmet's default CSP, an
 * attack played by `demo-app/attack.ts`, then sign in with the token, find the
 * attacked users at the top with a risen score and a sparkline, open a timeline,
 * sign out. The page must raise no CSP violation or script error, and its script
 * and stylesheet must really have loaded. Screenshots go to spec/artifacts/.
 *
 * Chromium is required, not optional: .ci/run installs it when /usr/bin/chromium is
 * missing, and this spec fails (never skips) without it.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium } from 'playwright-core'
import { createDemoApp, type DemoApp } from '../demo-app/app.js'
import { runAttack } from '../demo-app/attack.js'
import { MemoryLogger } from './helpers/apps.js'
import { waitUntil } from './helpers/receivers.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const TOKEN = 'browser-spec-hub-token-0123456789abcdefgh'

describe('Security Hub dashboard in Chromium', () => {
  let server: Server
  let demo: DemoApp
  let origin: string
  let browser: Browser

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium), as .ci/run does`,
    )
    mkdirSync(ARTIFACTS, { recursive: true })
    server = createServer()
    server.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    demo = createDemoApp({ mode: 'automatic', logger: new MemoryLogger(), hub: { origin, token: TOKEN } })
    server.on('request', demo.app)
    // root in a container: Chromium's sandbox needs user namespaces it may not have.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  })

  after(async () => {
    await browser?.close()
    await demo?.sqreen.close()
    await demo?.hub?.close()
    server?.closeAllConnections()
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  })

  it('sign in, see the attacked users rise with an alert, open a timeline, sign out', async () => {
    const attack = await runAttack(origin)
    assert.equal(attack.logins, 55)
    // The app forwards every 500 ms; wait until the hub has scored the attack.
    await waitUntil(() => (demo.hub?.stats().counters.alerts ?? 0) >= 2, 'two alerts at the hub', 10_000)

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    const problems: string[] = []
    page.on('console', (m) => {
      // HTTP errors are checked below, from the responses themselves (the wrong token's 401 is expected).
      if (m.text().startsWith('Failed to load resource')) return
      if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(m.text())
    })
    page.on('pageerror', (err) => problems.push(err.message))
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}`))
    page.on('response', (res) => {
      const expected = res.status() === 401 && res.request().method() === 'POST'
      if (res.status() >= 400 && !expected) problems.push(`HTTP ${res.status()} for ${res.url()}`)
    })

    // Not signed in: the dashboard sends people to the sign-in form.
    await page.goto(`${origin}/hub/`)
    assert.equal(new URL(page.url()).pathname, '/hub/login')
    assert.equal(await page.locator('#riskiest').count(), 0)
    await page.fill('#token', 'not-the-token')
    await page.click('button[type=submit]')
    assert.match(await page.locator('p.error').innerText(), /not valid/)
    await page.fill('#token', TOKEN)
    await page.click('button[type=submit]')
    await page.waitForURL(`${origin}/hub/`)

    // The riskiest users: alice (brute force) and bob (logged in from the stuffing IP).
    const riskiest = page.locator('#riskiest tbody tr')
    const first = await riskiest.nth(0).locator('td').nth(0).innerText()
    const second = await riskiest.nth(1).locator('td').nth(0).innerText()
    assert.deepEqual([first, second].sort(), ['id:2', 'login:alice@example.com'])
    const aliceRow = page.locator('#riskiest tbody tr', { hasText: 'login:alice@example.com' })
    const score = Number(await aliceRow.locator('.score').innerText())
    assert.ok(score > 10, `alice's score ${score}`)
    assert.equal(await aliceRow.locator('svg.spark polyline').count(), 1)
    const box = await aliceRow.locator('svg.spark').boundingBox()
    assert.ok(box && box.width >= 100 && box.height >= 20, 'the sparkline is drawn')
    assert.equal(await page.locator('ul.alerts li').count(), 2)

    // The stylesheet and the script were allowed by the CSP and ran.
    // (Browser code as strings: this project's TypeScript has no DOM types.)
    const radius = await page.evaluate('getComputedStyle(document.querySelector(".score")).borderTopLeftRadius')
    assert.equal(radius, '10px', 'hub.css applied')
    // hub.js gives each <time> a title (the UTC text) when it shows local times.
    await page.waitForFunction('document.querySelector("time[title]") !== null', undefined, { timeout: 5000 })
    await page.screenshot({ path: `${ARTIFACTS}hub-overview.png`, fullPage: true })

    // One user's timeline: their failed logins and the detections they caused.
    await aliceRow.locator('a').click()
    await page.waitForURL(/\/hub\/user\?key=login%3Aalice%40example\.com$/)
    assert.equal(await page.locator('#user-key').innerText(), 'login:alice@example.com')
    assert.ok(Number(await page.locator('#user-score').innerText()) > 10)
    const timeline = await page.locator('#timeline').innerText()
    assert.match(timeline, /Brute force/)
    assert.match(timeline, /Login failed/)
    assert.match(timeline, /203\.0\.113\.66/)
    assert.equal(await page.locator('svg.spark.large').count(), 1)
    await page.screenshot({ path: `${ARTIFACTS}hub-user.png`, fullPage: true })

    // The page refreshes itself in place (hub.js) without losing the session.
    await page.waitForTimeout(5600)
    assert.equal(await page.locator('#user-key').innerText(), 'login:alice@example.com')

    await page.click('form.logout button')
    await page.waitForURL(`${origin}/hub/login`)
    await page.goto(`${origin}/hub/`)
    assert.equal(new URL(page.url()).pathname, '/hub/login', 'signed out for real')
    assert.deepEqual(problems, [], 'no CSP violation or script error')
    assert.ok(existsSync(`${ARTIFACTS}hub-user.png`))
    await context.close()
  })
})
