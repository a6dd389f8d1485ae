import { createHash } from 'node:crypto'
import type { Identity } from '../event.js'
import { wellFormed } from '../well-formed.js'

/**
 * A part of a composite key. `encodeURIComponent` throws on a lone UTF-16 surrogate (a
 * username saved from a JSON sign-up may hold one), and every event of that user was
 * dropped at the identity boundary; it is written as UTF-8 would carry it (U+FFFD).
 */
const part = (text: string): string => {
  try {
    return encodeURIComponent(text)
  } catch {
    return encodeURIComponent(wellFormed(text))
  }
}

const MAX_KEY = 512

/**
 * The key of a user's ledger: `id:<id>` when the identity has an `id`, so a user
 * who changes e-mail keeps their history (and cannot reset their threat level),
 * else the whole composite key in a canonical order. `null` for nobody.
 */
export const userKeyOf = (identity: Identity): string | null => {
  const id = identity.id
  if (id !== undefined) return `id:${id}`
  const keys = Object.keys(identity).sort()
  if (keys.length === 0) return null
  const key = keys.map((k) => `${part(k)}=${part(String(identity[k]))}`).join('&')
  // Its SHA-256 past 512 characters, the hub's limit for a key (16 values of 256 characters,
  // each percent-encoded to up to 9 times its length, reach 37 kB): before, every event of
  // such a user was refused by the hub, and lost. `hash:` cannot be a composite key's start
  // (those have no raw `:`), nor an `id:` or `login:` key's.
  return key.length <= MAX_KEY ? key : `hash:${createHash('sha256').update(key).digest('base64url')}`
}
