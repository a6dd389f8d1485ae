import { createRequire } from 'node:module'
import type { Express } from 'express'
import express5 from 'express'
import passport07 from 'passport'
import { type AuthEvent, type Options, type SqreenAuth, sqreenAuth } from '../../lib/index.js'

const require = createRequire(import.meta.url)

type ExpressFactory = typeof express5
type PassportModule = typeof passport07

export interface Variant {
  readonly name: string
  readonly express: ExpressFactory
  readonly passport: PassportModule
}

/** Express 5 + Passport 0.7 and Express 4 + Passport 0.6: the supported extremes. */
export const variants: readonly Variant[] = [
  { name: 'express 5 + passport 0.7', express: express5, passport: passport07 },
  {
    name: 'express 4 + passport 0.6',
    express: require('express4') as ExpressFactory,
    passport: require('passport06') as PassportModule,
  },
]

export type Authenticator = InstanceType<PassportModule['Passport']>

/** Collects events and lets a test wait for them without sleeping blindly. */
export class EventLog {
  readonly events: AuthEvent[] = []
  #waiters: { n: number; resolve: () => void }[] = []

  readonly push = (event: AuthEvent): void => {
    this.events.push(event)
    this.#waiters = this.#waiters.filter((w) => {
      if (this.events.length >= w.n) w.resolve()
      return this.events.length < w.n
    })
  }

  /** Resolves when at least `n` events arrived; rejects after `ms`. */
  waitFor(n: number, ms = 3000): Promise<AuthEvent[]> {
    if (this.events.length >= n) return Promise.resolve(this.events)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `expected ${n} events, got ${this.events.length}: ${JSON.stringify(this.events.map((e) => e.type))}`,
            ),
          ),
        ms,
      )
      this.#waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer)
          resolve(this.events)
        },
      })
    })
  }

  /**
   * Waits for `n` events, then a little longer, and asserts that exactly `n` arrived:
   * the "one event per request, not two" check most scenarios make.
   */
  async exactly(n: number, ms = 3000): Promise<AuthEvent[]> {
    await this.waitFor(n, ms)
    const events = await this.settle()
    if (events.length !== n) {
      throw new Error(
        `expected exactly ${n} events, got ${events.length}: ${JSON.stringify(events.map((e) => e.type))}`,
      )
    }
    return events
  }

  /** Waits a little and asserts nothing more arrives (for "no event" cases). */
  async settle(ms = 100): Promise<AuthEvent[]> {
    await new Promise((r) => setTimeout(r, ms))
    return this.events
  }
}

/** A logger that remembers every line, so tests can assert on (and search) logs. */
export class MemoryLogger {
  readonly lines: string[] = []
  warn = (m: string): void => void this.lines.push(`warn ${m}`)
  error = (m: string): void => void this.lines.push(`error ${m}`)
  info = (m: string): void => void this.lines.push(`info ${m}`)
  debug = (m: string): void => void this.lines.push(`debug ${m}`)
}

export interface Harness {
  app: Express
  passport: Authenticator
  sqreen: SqreenAuth
  log: EventLog
  logger: MemoryLogger
}

/**
 * A real Express app with a fresh Passport Authenticator (never the singleton,
 * so test files cannot observe each other), body parsing and the middleware.
 * `setup` registers strategies and routes.
 */
export const harness = (
  variant: Variant,
  setup: (h: Omit<Harness, 'sqreen'> & { sqreen: SqreenAuth }) => void,
  options: Partial<Options> = {},
): Harness => {
  const app = variant.express() as unknown as Express
  const passport = new variant.passport.Passport() as Authenticator
  const log = new EventLog()
  const logger = new MemoryLogger()
  app.use(variant.express.urlencoded({ extended: false }))
  app.use(variant.express.json())
  app.use(passport.initialize())
  const sqreen = sqreenAuth({ passport, onEvent: log.push, logger, ...options })
  app.use(sqreen)
  const h = { app, passport, sqreen, log, logger }
  setup(h)
  return h
}
