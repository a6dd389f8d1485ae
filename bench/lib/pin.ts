import { execFileSync } from 'node:child_process'
import { cpus } from 'node:os'

/**
 * Pins every thread of the servers to the last CPU and every thread of this process to
 * the others (Linux taskset); a description of what was done, for the report.
 */
export const pin = (serverPids: readonly number[]): string => {
  const last = cpus().length - 1
  if (last < 1) return 'no (one CPU)'
  const others = last === 1 ? '0' : `0-${last - 1}`
  try {
    for (const pid of serverPids) execFileSync('taskset', ['-a', '-cp', String(last), String(pid)], { stdio: 'ignore' })
    execFileSync('taskset', ['-a', '-cp', others, String(process.pid)], { stdio: 'ignore' })
  } catch (err) {
    throw new Error(`--pin: taskset failed (${(err as Error).message}); run without --pin`)
  }
  return `servers on CPU ${last}, load generator on CPU ${others}`
}
