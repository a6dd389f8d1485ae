import type { Request } from 'express'
import type { FailureReason } from '../event.js'

const MAX_LOGIN = 256

/**
 * passport-local's own lookup, step for step (lib/utils.js): bracket fields such as
 * `user[email]` walk the body, the first value along the way that is not an object is the
 * answer (`user=alice` answers `user[email]` with "alice"), and an object or an array at
 * the end is no answer, so passport-local then reads the query string. Capture once kept
 * the array: `{"username":["x"]}` with `?username=alice` was nobody's guess, while
 * passport-local checked alice's password.
 */
const lookup = (obj: unknown, field: string): unknown => {
  if (!obj) return undefined
  let node = obj as Record<string, unknown>
  for (const part of field.includes('[') ? field.split(']').join('').split('[') : [field]) {
    const prop = node[part]
    if (prop === undefined) return undefined
    if (typeof prop !== 'object' || prop === null) return prop
    node = prop as Record<string, unknown>
  }
  return undefined
}

const asLogin = (value: unknown): string | undefined => {
  if (typeof value === 'number') return String(value)
  if (typeof value !== 'string') return undefined
  const trimmed = value.trim()
  return trimmed === '' ? undefined : trimmed.slice(0, MAX_LOGIN)
}

const authorizationScheme = (req: Request): string | undefined => {
  const header = req.headers?.authorization
  if (typeof header !== 'string') return undefined
  const space = header.indexOf(' ')
  return (space === -1 ? header : header.slice(0, space)).toLowerCase()
}

/*
 * The Authorization header read exactly as passport-http reads it, or a brute force sent in
 * a form passport-http accepts and capture did not would go uncounted: it takes any scheme
 * that *contains* "Basic" or "Digest" (`/Basic/i.test(scheme)`: `xBasic` too), and the
 * credentials from the second space-separated part only. Twelve guesses with `xBasic`
 * scored nothing, and the takeover that followed raised no alert.
 */

const basicLogin = (header: string): string | undefined => {
  const parts = header.split(' ')
  if (parts.length < 2 || !/basic/i.test(parts[0] as string)) return undefined
  const credentials = Buffer.from(parts[1] as string, 'base64')
    .toString()
    .split(':')
  return credentials.length < 2 ? undefined : asLogin(credentials[0])
}

const digestLogin = (header: string): string | undefined => {
  const parts = header.split(' ')
  if (parts.length < 2 || !/digest/i.test(parts[0] as string)) return undefined
  // passport-http's own parse: params split on commas outside quotes, each `name="value"`,
  // the last of a name winning.
  let username: string | undefined
  for (const token of paramTokens(parts.slice(1).join(' '))) {
    const param = digestParam(token)
    if (param?.[0] === 'username') username = param[1]
  }
  return asLogin(username)
}

/**
 * passport-http's split of Digest params, `/,(?=(?:[^"]|"[^"]*")*$)/`: at each comma followed
 * by an even number of quotes. That regular expression takes quadratic time (a 16 kB header
 * of commas, 73 ms); the same cuts are found here in one pass from the end.
 */
const paramTokens = (params: string): string[] => {
  const cuts: number[] = []
  let quotes = 0
  for (let i = params.length - 1; i >= 0; i--) {
    const c = params.charCodeAt(i)
    if (c === 0x22) quotes++
    else if (c === 0x2c && quotes % 2 === 0) cuts.push(i)
  }
  const tokens: string[] = []
  let start = 0
  for (let k = cuts.length - 1; k >= 0; k--) {
    const cut = cuts[k] as number
    tokens.push(params.slice(start, cut))
    start = cut + 1
  }
  tokens.push(params.slice(start))
  return tokens
}

/** `\w` (ASCII letters, digits, `_`). */
const isWord = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f

/**
 * passport-http's reading of one Digest param, `/(\w+)=["]?([^"]+)["]?$/.exec(token)`, as
 * `[name, value]`: the first run of word characters followed by `=` whose rest is a value,
 * optionally quoted, that runs to the end. That regular expression retries every start
 * position: quadratic, 130-200 ms for a 16 kB token, which capture added to passport-http's
 * own on every such request. Here in one pass (the same answers on 500,000 random tokens).
 */
const digestParam = (token: string): [string, string] | undefined => {
  const n = token.length
  // The next quote at or after each position, so each candidate's value is checked at once.
  const nextQuote = new Int32Array(n + 1)
  nextQuote[n] = n
  for (let i = n - 1; i >= 0; i--) nextQuote[i] = token.charCodeAt(i) === 0x22 ? i : (nextQuote[i + 1] as number)
  let i = 0
  while (i < n) {
    if (!isWord(token.charCodeAt(i))) {
      i++
      continue
    }
    const start = i
    while (i < n && isWord(token.charCodeAt(i))) i++
    if (i < n && token.charCodeAt(i) === 0x3d) {
      const value = i + 1 < n && token.charCodeAt(i + 1) === 0x22 ? i + 2 : i + 1
      const end = nextQuote[value] as number
      // At least one character, then the end, or a closing quote and the end.
      if (end > value && (end === n || end === n - 1)) return [token.slice(start, i), token.slice(value, end)]
    }
  }
  return undefined
}

/** Whether the request offers credentials of a challenge's scheme, as the strategy would judge it. */
const offersScheme = (req: Request, scheme: string): boolean => {
  const offered = authorizationScheme(req)
  if (offered === undefined) return false
  // passport-http's rule for its two schemes (see above); an exact match for the others
  // (passport-http-bearer's is `/^Bearer$/i`).
  return scheme === 'basic' || scheme === 'digest' ? offered.includes(scheme) : offered === scheme
}

/**
 * The login a request attempts, read by documented rules (never by guessing
 * from field names):
 * 1. the application's `login(req, strategy)` option, when it returns a string;
 * 2. a passport-local strategy's configured username field (`_usernameField`),
 *    from the body, then the query string, exactly as passport-local reads it;
 * 3. for passport-http's strategies (named `basic` / `digest`), the user part
 *    of an `Authorization: Basic` header or the `username` of a Digest header.
 * The password is never read. A throwing `login` option is reported through
 * `onError` and the built-in rules still apply.
 */
export const readLogin = (
  req: Request,
  strategy: object,
  strategyName: string,
  custom: ((req: Request, strategy: string) => string | undefined | null) | undefined,
  onError: (err: unknown) => void,
): string | undefined => {
  if (custom) {
    try {
      const fromOption = asLogin(custom(req, strategyName))
      if (fromOption !== undefined) return fromOption
    } catch (err) {
      onError(err)
    }
  }
  const usernameField = (strategy as { _usernameField?: unknown })._usernameField
  if (typeof usernameField === 'string') {
    // passport-local's own choice: the body's value when truthy, else the query's. A body's
    // `0` (or `""`) with `?username=alice` is alice's attempt, and `"   "` is not.
    return asLogin(lookup(req.body, usernameField) || lookup(req.query, usernameField))
  }
  // The strategy's own name, not the name it was registered under: passport-http sets it.
  const kind = (strategy as { name?: unknown }).name
  if (kind !== 'basic' && kind !== 'digest') return undefined
  const header = req.headers?.authorization
  if (typeof header !== 'string') return undefined
  return kind === 'basic' ? basicLogin(header) : digestLogin(header)
}

/**
 * HTTP authentication schemes a strategy's challenge can name: the IANA registry, and NTLM
 * and Hawk, which Passport strategies use too. Lower case.
 */
const AUTH_SCHEMES: ReadonlySet<string> = new Set([
  'basic',
  'bearer',
  'concealed',
  'digest',
  'dpop',
  'hawk',
  'hoba',
  'mutual',
  'negotiate',
  'ntlm',
  'oauth',
  'privatetoken',
  'scram-sha-1',
  'scram-sha-256',
  'vapid',
])

/** A scheme of another name followed by an auth-param (`Custom realm="api"`): still a challenge, by its form. */
const PARAMETERISED_CHALLENGE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\s+[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*=/

/**
 * The scheme a `fail()` string challenges with, or `undefined` when the string is a message.
 * Passport passes a string to `fail()` on as a `WWW-Authenticate` challenge, but strategies
 * also pass plain messages there ('Invalid PIN', a token library's 'invalid signature'), and
 * Passport flashes those as messages: read as a challenge, their first word never matched
 * the request's scheme, so every such refusal counted as no credentials offered.
 */
const challengeScheme = (challenge: string): string | undefined => {
  const text = challenge.trimStart()
  const scheme = text.split(/\s/, 1)[0]?.toLowerCase()
  if (scheme === undefined || scheme === '') return undefined
  return AUTH_SCHEMES.has(scheme) || PARAMETERISED_CHALLENGE.test(text) ? scheme : undefined
}

/**
 * Why a strategy failed. `missing_credentials` means nothing was offered, so it
 * is not a wrong password: passport-local answers 400 to an empty form, and a
 * challenge-based strategy (Basic, Digest, Bearer) challenges a request that
 * carries no Authorization header of its scheme. A challenge that names an
 * error (`error="invalid_token"`) means credentials were offered and refused, and
 * a string that is a message, not a challenge, is a refusal too.
 */
export const classifyFailure = (req: Request, challenge: unknown, status: unknown): FailureReason => {
  if (status === 400) return 'missing_credentials'
  if (typeof challenge === 'string' && challenge !== '' && !/\berror\s*=/i.test(challenge)) {
    const scheme = challengeScheme(challenge)
    if (scheme !== undefined && !offersScheme(req, scheme)) return 'missing_credentials'
  }
  return 'invalid_credentials'
}

/** Whether a strategy is an OAuth 2.0 client: passport-oauth2, and the strategies built on it (Google, GitHub, ...). */
export const isOAuth2Client = (strategy: unknown): boolean => {
  if (strategy === null || typeof strategy !== 'object') return false
  const client = (strategy as { _oauth2?: unknown })._oauth2
  return client !== null && typeof client === 'object'
}

/**
 * An OAuth 2.0 callback saying that the user declined at the provider (`error=access_denied`,
 * RFC 6749 section 4.1.2.1), which passport-oauth2 answers with `fail()`. Nothing was
 * offered, so it is no wrong password: counted as one, the people of an office behind one
 * address clicking "Cancel" on a consent screen made that address a stuffing source, and
 * every login from it then scored. Asked only of an OAuth 2.0 client's failure: on a
 * password form, a query parameter must not turn guesses into nothing.
 */
export const declinedAtProvider = (req: Request): boolean =>
  (req.query as Record<string, unknown> | undefined)?.error === 'access_denied'
