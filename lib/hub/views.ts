import { Buffer } from 'node:buffer'
import { ClockHand } from '../clock-hand.js'
import { type AuthEvent, eventTime, hasFields, type Identity } from '../event.js'
import type { RiskAlert } from '../risk/alert.js'
import { Interner } from './interner.js'

/** What the hub keeps of an event for people: enough for a timeline, nothing more. */
export interface EventSummary {
  readonly id: string
  readonly type: AuthEvent['type']
  readonly at: string
  readonly strategy: string | null
  readonly reason?: AuthEvent['reason']
  readonly ip: string | null
  readonly userAgent: string | null
  readonly name?: string
  readonly severity?: AuthEvent['severity']
  readonly status?: number
}

export interface UserView {
  readonly userKey: string
  identity: Identity
  firstSeen: number
  lastSeen: number
  succeeded: number
  failed: number
  other: number
  /** Most recent last, at most `eventsPerUser`. */
  events: EventSummary[]
  /**
   * The time of the newest of `events` (epoch ms). Order is decided by time, not by the
   * text of `at`: forwarders may write the same instant as `...Z` or with an offset.
   */
  newest: number
  /** Last known risk (from `engine.risk`), refreshed when read after new events or when stale. */
  score: number
  rise24h: number
  refreshedAt: number
  dirty: boolean
  /** Seen again since eviction last passed over it: its second chance (see `HubViews`). */
  recent: boolean
}

export interface ViewLimits {
  readonly users: number
  readonly eventsPerUser: number
  readonly alerts: number
}

/** A user seen again since eviction last passed over it is kept, once (see `ClockHand`). */
const takeSecondChance = (view: UserView): boolean => {
  const recent = view.recent
  view.recent = false
  return recent
}

/**
 * What the views keep of a user agent: what the user page shows of it (pages.ts). The
 * schema allows 512 characters, and a key holder sending unique ones kept 50 of them
 * for each of 10,000 users (about half a gigabyte); cut, they are a quarter of that.
 */
export const USER_AGENT_SHOWN = 120

/**
 * The first `USER_AGENT_SHOWN` characters of a user agent, as a string of its own: V8's
 * `slice` of a long string is a view that keeps the whole original alive. A high surrogate
 * left alone at the cut is dropped rather than kept half a character.
 */
export const shownUserAgent = (ua: string): string => {
  if (ua.length <= USER_AGENT_SHOWN) return ua
  let end = USER_AGENT_SHOWN
  const last = ua.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  // Through a Buffer: a fresh flat string, lossless for any UTF-16 (lone surrogates too).
  return Buffer.from(ua.slice(0, end), 'utf16le').toString('utf16le')
}

const summary = (e: AuthEvent, userAgent: string | null): EventSummary => {
  const s: { -readonly [K in keyof EventSummary]: EventSummary[K] } = {
    id: e.id,
    type: e.type,
    at: e.at,
    strategy: e.strategy,
    ip: e.ip,
    userAgent,
  }
  if (e.reason !== undefined) s.reason = e.reason
  if (e.name !== undefined) s.name = e.name
  if (e.severity !== undefined) s.severity = e.severity
  if (e.status !== undefined) s.status = e.status
  return s
}

/**
 * The hub's own bounded views for the API and the dashboard. The `Store`
 * contract has no listing operation (and a Redis store shared by many hubs
 * should not be scanned), so the hub remembers which users it has seen, their
 * recent events and the alerts it raised, each capped; scores come from the
 * engine. Users are kept in the order they were first seen, and the cap evicts
 * the first one not seen again since eviction last passed over it (a second
 * chance, the CLOCK approximation of least-recently-seen): an event about a
 * known user sets a flag instead of moving it to the end of the Map, which
 * would cost a delete and an insert per event.
 */
export class HubViews {
  readonly #users = new Map<string, UserView>()
  readonly #hand = new ClockHand(this.#users)
  readonly #alerts: RiskAlert[] = []
  readonly #limits: ViewLimits
  /**
   * Cut user agents, one string per value: the ingest shares full ones between events,
   * and a cut copy per event would undo that for every agent longer than the cut.
   */
  readonly #userAgents = new Interner(1_000)

  constructor(limits: ViewLimits) {
    this.#limits = limits
  }

  get userCount(): number {
    return this.#users.size
  }

  record(event: AuthEvent): void {
    const key = event.userKey
    if (key === null) return
    const at = eventTime(event.at)
    let view = this.#users.get(key)
    if (view === undefined) {
      view = {
        userKey: key,
        identity: event.identity,
        firstSeen: at,
        lastSeen: at,
        succeeded: 0,
        failed: 0,
        other: 0,
        events: [],
        newest: Number.NEGATIVE_INFINITY,
        score: 0,
        rise24h: 0,
        refreshedAt: 0,
        dirty: true,
        recent: false,
      }
      this.#users.set(key, view)
    } else view.recent = true
    if (event.type === 'login.succeeded') view.succeeded++
    else if (event.type === 'login.failed') view.failed++
    else view.other++
    if (hasFields(event.identity)) view.identity = event.identity
    view.firstSeen = Math.min(view.firstSeen, at)
    view.lastSeen = Math.max(view.lastSeen, at)
    view.dirty = true
    const ua = event.userAgent
    this.#push(
      view,
      summary(event, ua === null || ua.length <= USER_AGENT_SHOWN ? ua : this.#userAgents.intern(shownUserAgent(ua))),
      at,
    )
    // The engine merges the failures recorded under an attempted login into the user
    // who then logs in with it; the timeline follows, so the brute force shows there.
    if (event.type === 'login.succeeded' && event.loginKey !== undefined && event.loginKey !== key) {
      const attacked = this.#users.get(event.loginKey)
      if (attacked !== undefined) {
        this.#users.delete(event.loginKey)
        view.failed += attacked.failed
        view.succeeded += attacked.succeeded
        view.other += attacked.other
        view.firstSeen = Math.min(view.firstSeen, attacked.firstSeen)
        this.#merge(view, attacked.events)
      }
    }
    if (this.#users.size > this.#limits.users) this.#evict(view)
  }

  /** Evicts one user: the next in order not seen again since eviction last passed over it (never `spare`). */
  #evict(spare: UserView): void {
    const victim = this.#hand.victim(spare, takeSecondChance)
    if (victim !== undefined) this.#users.delete(victim[0])
  }

  #push(view: UserView, event: EventSummary, at: number): void {
    if (at < view.newest) {
      this.#merge(view, [event])
      return
    }
    view.events.push(event)
    view.newest = at
    if (view.events.length > this.#limits.eventsPerUser) {
      view.events.splice(0, view.events.length - this.#limits.eventsPerUser)
    }
  }

  /** Adds events that may be older than the view's, keeping its timeline in time order (stable), newest kept. */
  #merge(view: UserView, events: readonly EventSummary[]): void {
    const all = [...view.events, ...events]
    // Each time parsed once, not twice per comparison.
    const times = all.map((e) => eventTime(e.at))
    const order = all.map((_, i) => i).sort((a, b) => (times[a] as number) - (times[b] as number) || a - b)
    const kept = order.slice(Math.max(0, order.length - this.#limits.eventsPerUser))
    view.events = kept.map((i) => all[i] as EventSummary)
    const last = kept[kept.length - 1]
    view.newest = last === undefined ? Number.NEGATIVE_INFINITY : (times[last] as number)
  }

  /**
   * An event of this user was scored: its risk may have changed since a list last read
   * it. `record` marks the user too, but on arrival, before the scoring (see ingest).
   */
  scored(event: AuthEvent): void {
    if (event.userKey === null) return
    const view = this.#users.get(event.userKey)
    if (view) view.dirty = true
  }

  alert(alert: RiskAlert): void {
    this.#alerts.push(alert)
    if (this.#alerts.length > this.#limits.alerts) this.#alerts.shift()
    const view = this.#users.get(alert.userKey)
    if (view) view.dirty = true
  }

  /** Newest first. */
  alerts(limit: number, userKey?: string): RiskAlert[] {
    const out: RiskAlert[] = []
    for (let i = this.#alerts.length - 1; i >= 0 && out.length < limit; i--) {
      const a = this.#alerts[i] as RiskAlert
      if (userKey === undefined || a.userKey === userKey) out.push(a)
    }
    return out
  }

  get alertCount(): number {
    return this.#alerts.length
  }

  user(userKey: string): UserView | undefined {
    return this.#users.get(userKey)
  }

  users(): IterableIterator<UserView> {
    return this.#users.values()
  }
}
