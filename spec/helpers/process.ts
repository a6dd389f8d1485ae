/**
 * A TypeScript entry point of this repository run in its own Node process (through
 * tsx), as specs that need a real server process (the demo, an app that receives
 * signals) start it: output collected, exit observable, and the process registered in
 * `children` so the spec's `after` hook can kill what is still running.
 */
import { type ChildProcess, spawn } from 'node:child_process'
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
