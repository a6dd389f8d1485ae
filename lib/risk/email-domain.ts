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

/** Classifies the domain of an e-mail (or `anon-<id>@domain`); loads the list on first use. */
export const emailDomainKind = (email: string): DomainKind => {
  const at = email.lastIndexOf('@')
  if (at === -1) return 'regular'
  const domain = email
    .slice(at + 1)
    .trim()
    .toLowerCase()
    .replace(/\.$/, '')
  if (matches(domain, RELAY_DOMAINS)) return 'relay'
  disposable ??= disposableEmailBlocklistSet()
  return matches(domain, disposable) ? 'disposable' : 'regular'
}
