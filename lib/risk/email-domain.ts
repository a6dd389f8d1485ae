import { disposableEmailBlocklistSet } from 'disposable-email-domains-js'

/**
 * Privacy relays forward to a real, long-lived mailbox: unlike throwaway
 * addresses they are used by careful legitimate users, so they weigh less and
 * are kept as their own category rather than mixed into the disposable list.
 */
export const RELAY_DOMAINS: ReadonlySet<string> = new Set([
  'duck.com',
  'privaterelay.appleid.com',
  'mozmail.com',
  'simplelogin.com',
  'simplelogin.co',
  'simplelogin.fr',
  'slmail.me',
  'aleeas.com',
  'anonaddy.com',
  'anonaddy.me',
  'addy.io',
  'passmail.net',
  'passmail.com',
  'passinbox.com',
  'firefox.relay.com',
])

export type DomainKind = 'disposable' | 'relay' | 'regular'

let disposable: Set<string> | undefined

/** Parent domains too: `x.mailinator.com` is as throwaway as `mailinator.com`. */
const matches = (domain: string, set: ReadonlySet<string>): boolean => {
  for (let d = domain; d.includes('.'); d = d.slice(d.indexOf('.') + 1)) if (set.has(d)) return true
  return false
}

// Sign-ups and logins come from few domains (a handful of providers and the app's own
// users' companies): a bounded cache spares normalising and walking parent domains
// on every event that carries an e-mail.
const kinds = new Map<string, DomainKind>()
const KINDS_MAX = 5_000

/** Classifies the domain of an e-mail (or `anon-<id>@domain`); loads the list on first use. */
export const emailDomainKind = (email: string): DomainKind => {
  const at = email.lastIndexOf('@')
  if (at === -1) return 'regular'
  const raw = email.slice(at + 1)
  const cached = kinds.get(raw)
  if (cached !== undefined) return cached
  const domain = raw.trim().toLowerCase().replace(/\.$/, '')
  disposable ??= disposableEmailBlocklistSet()
  const kind = matches(domain, RELAY_DOMAINS) ? 'relay' : matches(domain, disposable) ? 'disposable' : 'regular'
  if (kinds.size >= KINDS_MAX) kinds.clear()
  kinds.set(raw, kind)
  return kind
}
