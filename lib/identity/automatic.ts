/**
 * Automatic user context, the deterministic rule (documented in the README):
 * - a string or number user is itself the `id`;
 * - `id`: the user's `id`, else its `_id` (Mongo ObjectIds become their hex string);
 * - `email`: the user's `email`, when it is a string;
 * - `username`: the user's `username`, when it is a string.
 * No other field is looked at, and nothing is guessed from field names.
 */
export const automaticIdentity = (user: unknown): Record<string, unknown> => {
  if (typeof user === 'string' || typeof user === 'number') return { id: user }
  if (user === null || typeof user !== 'object') return {}
  const u = user as Record<string, unknown>
  const identity: Record<string, unknown> = {}
  const id = u.id ?? u._id
  if (typeof id === 'string' || typeof id === 'number') identity.id = id
  else if (typeof id === 'bigint') identity.id = id.toString()
  else if (
    id !== null &&
    typeof id === 'object' &&
    typeof (id as { toHexString?: unknown }).toHexString === 'function'
  ) {
    identity.id = (id as { toHexString(): string }).toHexString()
  }
  if (typeof u.email === 'string') identity.email = u.email
  if (typeof u.username === 'string') identity.username = u.username
  return identity
}
