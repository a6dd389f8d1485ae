/**
 * `npm run demo`. Environment:
 *   SQREEN_MODE         automatic (default) | advanced
 *   SQREEN_AUTH_SECRET  advanced mode's key for failed-login pseudonyms (generated if unset)
 *   SQREEN_HUB_TOKEN    the Security Hub's sign-in token (generated and printed if unset)
 *   PORT                default 3000 (0 picks a free port)
 *
 * The app forwards its events to a Security Hub mounted in the same app at /hub;
 * `npm run demo:attack` (another terminal) plays a brute force and a credential-stuffing run.
 */
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SqreenAuthError, type UserContextMode } from '../lib/index.js'
import { createDemoApp, DEMO_USERS, type DemoApp, HUB_PATH } from './app.js'

const HOST = '127.0.0.1'

// A declaration (not an arrow) so TypeScript's control flow knows it never returns.
function fail(message: string): never {
  console.error(message)
  process.exit(1)
}

const port = Number(process.env.PORT || 3000)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT must be a port number, got "${process.env.PORT}".`)

// Passed through unchecked: sqreenAuth() validates it and explains a typo.
const mode = (process.env.SQREEN_MODE || 'automatic') as UserContextMode
const tokenGiven = process.env.SQREEN_HUB_TOKEN || undefined
const token = tokenGiven ?? randomBytes(32).toString('base64url')

// The forwarder needs the hub's URL, which holds the port: listen first (PORT=0 picks
// one), then build the app and hand it the requests.
const server = createServer()
server.on('error', (err) => fail(`Cannot listen on ${HOST}:${port}: ${err.message}`))
let demo: DemoApp | undefined
server.listen(port, HOST, () => {
  const { port: actual } = server.address() as AddressInfo
  const origin = `http://${HOST}:${actual}`
  try {
    demo = createDemoApp({ mode, hub: { origin, token } })
  } catch (err) {
    if (!(err instanceof SqreenAuthError)) throw err
    fail(`Bad demo configuration (SQREEN_MODE / SQREEN_AUTH_SECRET / SQREEN_HUB_TOKEN): ${err.message}`)
  }
  server.on('request', demo.app)
  console.log(`sqreen-auth demo, user context: ${mode}`)
  if (demo.secretGenerated) {
    console.log('Note: SQREEN_AUTH_SECRET is not set; using a secret generated for this run (demo only).')
  }
  console.log('Demo accounts:')
  for (const user of DEMO_USERS) console.log(`  ${user.email} / ${user.password}`)
  console.log(`Security Hub: ${origin}${HUB_PATH}/ (sign in with the token below)`)
  console.log(
    `  token: ${token}${tokenGiven ? ' (from SQREEN_HUB_TOKEN)' : ' (generated for this run; set SQREEN_HUB_TOKEN to choose it)'}`,
  )
  console.log(`Simulate an attack: DEMO_URL=${origin} SQREEN_HUB_TOKEN=${token} npm run demo:attack`)
  console.log(`Listening on ${origin}/login (Ctrl+C to stop)`)
})

let stopping = false
const stop = (signal: NodeJS.Signals): void => {
  if (stopping) {
    // A second Ctrl+C means "now".
    process.exit(1)
  }
  stopping = true
  console.log(`${signal}: shutting down`)
  // If a client holds a connection open, do not hang forever.
  setTimeout(() => fail('Shutdown timed out.'), 5000).unref()
  void (async () => {
    try {
      // Events still in flight are forwarded to the hub, which is served by this very
      // server: flush before it stops listening. The process then exits by itself (code 0).
      await demo?.sqreen.close()
      await demo?.hub?.close()
    } catch (err) {
      fail(`sqreen.close() failed: ${String(err)}`)
    }
    server.close()
    // Idle keep-alive connections would otherwise delay close() until they time out.
    server.closeIdleConnections()
  })()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
