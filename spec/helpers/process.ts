/**
 * A TypeScript entry point of this repository run in its own Node process (through
 * tsx), as specs that need a real server process (the demo, an app that receives
 * signals) start it: output collected, exit observable, and the process registered in
 * `children` so the spec's `after` hook can kill what is still running.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { after, afterEach } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface Spawned {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Runs `entry` (a path from the repository root) with `env` as its whole environment. */
export const spawnTsx = (entry: string, env: NodeJS.ProcessEnv, children: ChildProcess[]): Spawned => {
  const childEnv = { ...env }
  // The test runner's own context must not leak into the child: it would report to it.
  delete childEnv.NODE_TEST_CONTEXT
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/**
 * A tripwire for a whole spec file: any promise rejected without a handler while it runs
 * fails the test that was running (checked after each test, once stray rejections had a
 * moment to surface). For specs that make stores and hubs fail on purpose.
 */
export const failOnUnhandledRejections = (): void => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason)
  }
  process.on('unhandledRejection', onUnhandled)
  after(() => {
    process.off('unhandledRejection', onUnhandled)
  })
  afterEach(async () => {
    await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(unhandled.splice(0), [], 'unhandled rejections')
  })
}
