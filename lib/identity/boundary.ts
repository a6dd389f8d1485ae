import { createHmac, randomUUID } from 'node:crypto'
import type { RawAttempt } from '../capture/raw.js'
import type { Diagnostics } from '../diagnostics.js'
import { type AuthEvent, type AuthEventType, hasFields, type Identity } from '../event.js'
import type { Config, IdentifyResult } from '../options.js'
import { automaticIdentity } from './automatic.js'
import { createIdentityGuard, type IdentitySource } from './guard.js'
import { isoTimeFormatter } from './iso-time.js'
import { LoginLinks } from './links.js'
import { loginPseudonym, normaliseLogin } from './pseudonym.js'
import { userKeyOf } from './user-key.js'

export interface IdentityBoundary {
  /**
   * Turns a raw attempt into an `AuthEvent`. The result holds no user object,
   * raw login or request; in advanced mode nothing but the checked output of
   * `identify` / `identifyLogin` / the SDK's identity and a keyed login hash.
   */
  toEvent(raw: RawAttempt): AuthEvent | Promise<AuthEvent>
  /**
   * The ledger key of a user object, synchronously (for enforcement on the request
   * path); `undefined` when it cannot be known without waiting (an async `identify`).
   */
  userKeyOfUser(user: unknown): string | null | undefined
  /** The ledger key of an attempted login (`login:…`): where its failures count until it is linked to its user. */
  loginKeyOf(login: string): string
  /**
   * The accounts an attempted login was linked to by successes in this process, however it
   * was typed, for the block check: the latest (`current`, and whether the login was typed
   * as it typed it, which makes a failure count against it, see `linkOf`) and up to a few
   * before it (`others`). All of them: an attacker who owns a look-alike account re-links
   * the login by logging in, and a blocked victim's login would then tell a right password
   * (403) from a wrong one.
   */
  linksOf(login: string): LoginLinksOf
}

export interface LoginLinksOf {
  readonly current: string | undefined
  readonly typedAsCurrent: boolean
  readonly others: readonly string[]
}

const NO_LINKS: LoginLinksOf = { current: undefined, typedAsCurrent: false, others: [] }

const TYPE_OF_OUTCOME = {
  succeeded: 'login.succeeded',
  failed: 'login.failed',
  error: 'login.error',
} as const satisfies Record<NonNullable<RawAttempt['outcome']>, AuthEventType>

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function'

/**
 * `keepLinked`: whether an account a login was linked to must be remembered when another
 * account re-links the login (a blocked one, see LoginLinks).
 */
export const createIdentityBoundary = (
  config: Config,
  diag: Diagnostics,
  keepLinked?: (userKey: string) => boolean,
): IdentityBoundary => {
  const { mode, identify, identifyLogin, secret } = config
  const guard = createIdentityGuard(mode, diag)
  const links = new LoginLinks(undefined, keepLinked)

  const isoTime = isoTimeFormatter()

  const loginKeyOf = (login: string): string =>
    // Advanced mode keys logins by HMAC; automatic mode forwards what it finds, as Sqreen did.
    mode === 'advanced' && secret ? `login:${loginPseudonym(secret, login)}` : `login:${normaliseLogin(login)}`

  /**
   * The login as typed (capture trims it), for links (see `linkOf`): in advanced mode a keyed
   * hash of it (never kept as typed), separate from the login key's, which is of the
   * normalised login.
   */
  const exactOf = (login: string): string =>
    mode === 'advanced' && secret ? createHmac('sha256', secret).update(`exact\0${login}`).digest('base64url') : login

  /**
   * The account a login is linked to, when the attempt typed it as that account did when it
   * logged in. Logins are keyed after normalisation (case, Unicode compatibility forms), so
   * a brute force cycling through `Alice`, `ALICE` and `ａlice` counts under one key; but
   * that can be broader than the application's own lookup, where `ａlice@example.com` (or
   * `Alice` in a case-sensitive one) is another account. An attacker who registered such a
   * look-alike and logged in once had the link point to their account, and the victim's
   * brute force was scored on the attacker's account, the victim's at 0. Typed differently,
   * a failure counts under the login's own key (it still scores and alerts, and a success of
   * the account merges it).
   */
  const linkOf = (login: string, loginKey: string) => {
    const linked = links.get(loginKey)
    return linked !== undefined && linked.exact === exactOf(login) ? linked : undefined
  }

  const threw = (source: IdentitySource, err: unknown): Identity => {
    diag.error(
      `${source}_threw`,
      `${source}() threw; the event was keyed by the attempted login when known, else recorded without identity`,
      err,
    )
    return {}
  }

  /** Calls `identify` / `identifyLogin`; stays synchronous unless the callback returns a promise. */
  const callUser = (
    fn: (...args: any[]) => IdentifyResult | Promise<IdentifyResult>,
    args: unknown[],
    source: IdentitySource,
  ): Identity | Promise<Identity> => {
    try {
      const result = fn(...args)
      if (!isThenable(result)) return guard.identity(result, source)
      return Promise.resolve(result).then(
        (value) => guard.identity(value, source),
        (err: unknown) => threw(source, err),
      )
    } catch (err) {
      return threw(source, err)
    }
  }

  const identityOfUser = (user: unknown): Identity | Promise<Identity> => {
    if (identify) return callUser(identify, [user], 'identify')
    return guard.identity(automaticIdentity(user), 'automatic')
  }

  interface Resolved {
    readonly identity: Identity
    readonly userKey: string | null
  }
  const resolved = (identity: Identity): Resolved => ({ identity, userKey: userKeyOf(identity) })

  /** The login itself as the identity: its ledger key *is* the login key, so a later success can merge it. */
  const loginIdentity = (login: string, loginKey: string): Resolved => ({
    identity: mode === 'advanced' ? { loginHash: loginKey.slice('login:'.length) } : { login: normaliseLogin(login) },
    userKey: loginKey,
  })

  /**
   * Whom a login belongs to when there is no user object (a failure): the user it was
   * linked to by an earlier success, else `identifyLogin`'s answer, else the login itself.
   */
  const identityOfLogin = (raw: RawAttempt, login: string, loginKey: string): Resolved | Promise<Resolved> => {
    const linked = linkOf(login, loginKey)
    if (linked) return linked
    if (!identifyLogin) return loginIdentity(login, loginKey)
    const mapped = callUser(identifyLogin, [login, raw.req], 'identifyLogin')
    const pick = (identity: Identity): Resolved =>
      hasFields(identity) ? resolved(identity) : loginIdentity(login, loginKey)
    return isThenable(mapped) ? mapped.then(pick) : pick(mapped)
  }

  const sdkSource = (raw: RawAttempt): IdentitySource =>
    raw.kind === 'signup' ? 'signupTrack' : raw.kind === 'custom' ? 'trackEvent' : 'authTrack'

  /** Whom an attempt belongs to when its user object gave nothing: its login, else nobody. */
  const fallback = (raw: RawAttempt, loginKey: string | undefined): Resolved | Promise<Resolved> =>
    raw.login !== undefined && loginKey !== undefined ? identityOfLogin(raw, raw.login, loginKey) : resolved({})

  const pickUser = (
    raw: RawAttempt,
    loginKey: string | undefined,
    identity: Identity,
  ): Resolved | Promise<Resolved> => {
    if (raw.kind === 'custom' || hasFields(identity)) return resolved(identity)
    // A logged-in user who identifies as nobody: every event of theirs falls back to the
    // login typed, silently, unless said. The usual cause is a field the user object does
    // not have (a Mongoose lean document has `_id`, not the `id` getter).
    if (raw.outcome === 'succeeded') {
      diag.warn(
        identify ? 'identity_empty.identify' : 'identity_empty.automatic',
        identify
          ? 'identify() returned no usable field for a logged-in user; their events are keyed by the login typed. Check the fields it reads exist on your user objects (e.g. String(user._id) for a Mongoose lean document).'
          : 'a logged-in user object has no id, _id, email or username; their events are keyed by the login typed. Pass identify: (user) => ({ id: String(user.yourKey) }).',
      )
    }
    return fallback(raw, loginKey)
  }

  // Plain functions taking their inputs (no closures per event): this runs for every login.
  const resolveIdentity = (raw: RawAttempt, loginKey: string | undefined): Resolved | Promise<Resolved> => {
    if (raw.identity !== undefined) return resolved(guard.identity(raw.identity, sdkSource(raw)))
    // A failure is about its user only when capture gave one: refused by blocking, or a
    // failure with no login on a request that already had a user (a second factor).
    if (raw.kind === 'custom' || raw.outcome === 'succeeded' || raw.reason === 'blocked' || raw.user != null) {
      if (raw.user === undefined || raw.user === null)
        return raw.kind === 'custom' ? resolved({}) : fallback(raw, loginKey)
      const fromUser = identityOfUser(raw.user)
      return isThenable(fromUser)
        ? fromUser.then((identity) => pickUser(raw, loginKey, identity))
        : pickUser(raw, loginKey, fromUser)
    }
    return fallback(raw, loginKey)
  }

  const userKeyOfUser = (user: unknown): string | null | undefined => {
    if (user === undefined || user === null || user === false) return null
    if (!identify) return userKeyOf(guard.identity(automaticIdentity(user), 'automatic'))
    try {
      const result = identify(user)
      if (!isThenable(result)) return userKeyOf(guard.identity(result, 'identify'))
      // Not awaited on the request path. Its rejection must not go unhandled (that would end
      // the process); the event's own identify() call reports the problem.
      result.then(undefined, () => {})
      return undefined
    } catch (err) {
      diag.error('identify_threw', 'identify() threw; the user could not be checked against the block list', err)
      return undefined
    }
  }

  return {
    userKeyOfUser,
    loginKeyOf,
    // The block check follows the link whatever the typing: refused only when typed as the
    // account typed it, a blocked account would answer a right password typed otherwise
    // apart from a wrong one (and let it in, with an async identify). The check on a
    // success compares the link with the account logging in (middleware.ts).
    linksOf: (login) => {
      const linked = links.get(loginKeyOf(login))
      if (linked === undefined) return NO_LINKS
      return { current: linked.userKey, typedAsCurrent: linked.exact === exactOf(login), others: linked.others }
    },
    toEvent(raw) {
      const loginKey = raw.login === undefined ? undefined : loginKeyOf(raw.login)
      const who = resolveIdentity(raw, loginKey)
      // Synchronous unless identify / identifyLogin returned a promise.
      return isThenable(who) ? who.then((w) => buildEvent(raw, loginKey, w)) : buildEvent(raw, loginKey, who)
    },
  }

  function buildEvent(raw: RawAttempt, loginKey: string | undefined, { identity, userKey }: Resolved): AuthEvent {
    if (raw.outcome === 'succeeded' && loginKey !== undefined && userKey !== null && userKey !== loginKey) {
      links.set(loginKey, userKey, identity, exactOf(raw.login as string))
    }
    const type: AuthEventType = raw.kind === 'login' ? TYPE_OF_OUTCOME[raw.outcome ?? 'failed'] : raw.kind
    const event: Record<string, unknown> = {
      id: randomUUID(),
      type,
      at: isoTime(raw.at),
      source: raw.source,
      mode,
      strategy: raw.strategy ?? null,
      identity: Object.freeze(identity),
      userKey,
      ip: raw.ip,
      userAgent: raw.userAgent,
    }
    // Optional fields are left out rather than set to undefined, so events stay
    // small and compare cleanly when serialised.
    if (type === 'login.failed') event.reason = raw.reason ?? 'invalid_credentials'
    if (loginKey !== undefined) event.loginKey = loginKey
    if (raw.status !== undefined) event.status = raw.status
    if (raw.attempts !== undefined) event.attempts = raw.attempts
    if (raw.error !== undefined) event.error = raw.error
    if (raw.kind === 'custom') {
      event.name = raw.name
      event.severity = raw.severity ?? 'low'
      const properties = guard.properties(raw.properties)
      if (properties !== undefined) event.properties = properties
    }
    return Object.freeze(event) as unknown as AuthEvent
  }
}
