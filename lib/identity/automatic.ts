/**
 * Automatic user context, the deterministic rule (documented in the README):
 * - a string or number user is itself the `id`;
 * - `id`: the user's `id` (when not empty), else its `_id` (Mongo ObjectIds become their hex string);
 * - `email`: the user's `email`, when it is a string;
 * - `username`: the user's `username`, when it is a string.
 * No other field is looked at, and nothing is guessed from field names. A field whose read
 * throws is absent.
 */
/**
 * A field of the user object, or `undefined` when reading it throws (a getter that throws, a
 * strict Proxy refusing a key it does not have): a field that cannot be read is absent, and
 * the others still identify the user.
 */
const field = (u: Record<string, unknown>, key: string): unknown => {
  try {
    return u[key]
  } catch {
    return undefined
  }
}

export const automaticIdentity = (user: unknown): Record<string, unknown> => {
  if (typeof user === 'string' || typeof user === 'number') return { id: user }
  if (user === null || typeof user !== 'object') return {}
  const u = user as Record<string, unknown>
  const identity: Record<string, unknown> = {}
  // An empty `id` (a column left blank) is no id: `_id` is read then.
  const own = field(u, 'id')
  const id = own === undefined || own === null || own === '' ? field(u, '_id') : own
  if (typeof id === 'string' || typeof id === 'number') identity.id = id
  else if (typeof id === 'bigint') identity.id = id.toString()
  else if (
    id !== null &&
    typeof id === 'object' &&
    typeof (id as { toHexString?: unknown }).toHexString === 'function'
  ) {
    try {
      identity.id = (id as { toHexString(): string }).toHexString()
    } catch {}
  }
  const email = field(u, 'email')
  if (typeof email === 'string') identity.email = email
  const username = field(u, 'username')
  if (typeof username === 'string') identity.username = username
  return identity
}
