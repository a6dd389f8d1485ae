import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChildMessage, ServerMode, ServerStats, ServerTarget } from './protocol.js'

export interface ServerProcess {
  readonly mode: ServerMode
  readonly pid: number
  readonly url: string
  stats(): Promise<ServerStats>
  close(): Promise<void>
}

const SERVER_ENTRY = fileURLToPath(new URL('./server.ts', import.meta.url))
// Absolute, so the child resolves the loader whatever its working directory.
const TSX_LOADER = import.meta.resolve('tsx')

const nextMessage = <T extends ChildMessage['type']>(
  child: ChildProcess,
  type: T,
  ms: number,
): Promise<Extract<ChildMessage, { type: T }>> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`server ${child.pid} sent no "${type}" message within ${ms} ms`))
    }, ms)
    const onMessage = (message: ChildMessage): void => {
      if (message.type !== type) return
      cleanup()
      resolve(message as Extract<ChildMessage, { type: T }>)
    }
    const onExit = (code: number | null): void => {
      cleanup()
      reject(new Error(`server ${child.pid} exited with code ${code} before sending "${type}"`))
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })

/** Starts one benchmark server in its own Node process and waits until it listens. */
export const startServer = async (mode: ServerMode, target: ServerTarget): Promise<ServerProcess> => {
  const child = fork(SERVER_ENTRY, [mode, target], {
    // BENCH_SERVER_PROF=<dir>: a V8 CPU profile of each server, written when it closes.
    // BENCH_SERVER_ARGS: more Node options for the servers (e.g. --trace-gc), space-separated.
    execArgv: [
      '--import',
      TSX_LOADER,
      ...(process.env.BENCH_SERVER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SERVER_PROF}`] : []),
      ...(process.env.BENCH_SERVER_ARGS?.split(' ').filter(Boolean) ?? []),
    ],
    // The child's stderr/stdout go to ours: a crash in the server must be visible.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, NODE_ENV: 'production' },
  })
  const ready = await nextMessage(child, 'ready', 30_000)
  const pid = child.pid as number
  return {
    mode,
    pid,
    url: `http://127.0.0.1:${ready.port}`,
    stats: () => {
      const answer = nextMessage(child, 'stats', 5_000)
      child.send({ type: 'stats' })
      return answer
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
        child.once('exit', () => {
          clearTimeout(timer)
          resolve()
        })
        child.send({ type: 'close' })
      }),
  }
}
