import type { Identity } from '../event.js'

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
  return keys.map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(String(identity[k]))}`).join('&')
}
