/**
 * `npm run demo`. Environment:
 *   SQREEN_MODE         automatic (default) | advanced
 *   SQREEN_AUTH_SECRET  advanced mode's key for failed-login pseudonyms (generated if unset)
 *   PORT                default 3000 (0 picks a free port)
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SqreenAuthError, type UserContextMode } from '../lib/index.js'
import { createDemoApp, DEMO_USERS } from './app.js'

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

let demo: ReturnType<typeof createDemoApp>
try {
  demo = createDemoApp({ mode })
} catch (err) {
  if (!(err instanceof SqreenAuthError)) throw err
  fail(`Bad demo configuration (SQREEN_MODE / SQREEN_AUTH_SECRET): ${err.message}`)
}
const { app, sqreen, secretGenerated } = demo

const server = createServer(app)
server.on('error', (err) => fail(`Cannot listen on ${HOST}:${port}: ${err.message}`))
server.listen(port, HOST, () => {
  const { port: actual } = server.address() as AddressInfo
  console.log(`sqreen-auth demo, user context: ${mode}`)
  if (secretGenerated) {
    console.log('Note: SQREEN_AUTH_SECRET is not set; using a secret generated for this run (demo only).')
  }
  console.log('Demo accounts:')
  for (const user of DEMO_USERS) console.log(`  ${user.email} / ${user.password}`)
  console.log(`Listening on http://${HOST}:${actual}/login (Ctrl+C to stop)`)
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
  server.close(async () => {
    // Delivers the events still in flight; the process then exits by itself (code 0)
    // once nothing is left to do.
    try {
      await sqreen.close()
    } catch (err) {
      fail(`sqreen.close() failed: ${String(err)}`)
    }
  })
  // Idle keep-alive connections would otherwise delay close() until they time out.
  server.closeIdleConnections()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
