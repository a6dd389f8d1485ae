/**
 * Real Redis for the specs: the shared server at `REDIS_URL` (default
 * redis://127.0.0.1:6379, which `.ci/run` makes sure is up), and throwaway
 * `redis-server` processes on free ports for the outage specs. Nothing here skips:
 * without a server the Redis specs fail, loudly.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A plain client for the spec's own inspection commands (SCAN, PTTL, SCRIPT FLUSH...). */
export const inspector = async (url = REDIS_URL): Promise<Redis> => {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000 })
  try {
    await client.connect()
  } catch (err) {
    client.disconnect()
    throw new Error(
      `Redis is not reachable at ${url} (${String(err)}). The Redis specs need a real server: start one (redis-server) or set REDIS_URL; .ci/run starts one.`,
    )
  }
  return client
}

/** A key prefix of its own for one spec or one store, so runs sharing a server never see each other. */
export const testPrefix = (what: string): string => `sqreen-test:${what}:${randomUUID().slice(0, 8)}:`

/** Every key under `prefix` (SCAN, never KEYS). */
export const keysUnder = async (client: Redis, prefix: string): Promise<string[]> => {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    found.push(...batch)
  } while (cursor !== '0')
  return found
}

/** Deletes every key under `prefix`. */
export const dropKeys = async (client: Redis, prefix: string): Promise<void> => {
  const keys = await keysUnder(client, prefix)
  for (let i = 0; i < keys.length; i += 500) await client.unlink(...keys.slice(i, i + 500))
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export const freePort = async (): Promise<number> => {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * A `redis-server` of the spec's own on `port`: no persistence, so a restart starts
 * empty (as after a crash without AOF), which also drops its script cache.
 */
export class RedisServer {
  #child: ChildProcess | undefined
  #stderr = ''

  constructor(readonly port: number) {}

  static async start(port?: number): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()))
    await server.start()
    return server
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get running(): boolean {
    return this.#child !== undefined
  }

  async start(): Promise<void> {
    if (this.#child) return
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    this.#stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString()
    })
    child.stdout?.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString()
    })
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new Error(`redis-server could not start: ${err.message}`)))
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${this.#stderr}`)))
    })
    failed.catch(() => {})
    this.#child = child
    // A spec process that dies (or forgets stop()) must not leave its server behind.
    const orphaned = (): void => {
      child.kill('SIGKILL')
    }
    process.once('exit', orphaned)
    child.once('exit', () => process.off('exit', orphaned))
    // Ready when it answers PING.
    const deadline = Date.now() + 5000
    for (;;) {
      const probe = new Redis(this.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        connectTimeout: 500,
      })
      probe.on('error', () => {})
      try {
        await Promise.race([probe.connect().then(() => probe.ping()), failed])
        probe.disconnect()
        return
      } catch (err) {
        probe.disconnect()
        if (Date.now() > deadline || !this.#child) throw err
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Sends a signal (SIGSTOP hangs the server: connections are accepted, nothing is answered; SIGCONT resumes it). */
  signal(signal: NodeJS.Signals): void {
    this.#child?.kill(signal)
  }

  /** Kills the server (SIGKILL: a crash, not a clean shutdown) and waits for it to be gone. */
  async stop(): Promise<void> {
    const child = this.#child
    if (!child) return
    this.#child = undefined
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    }
  }
}
