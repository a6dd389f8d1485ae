/**
 * The forwarder's wire format, version 2: a detached JWS with an unencoded payload
 * (RFC 7515 Appendix F, RFC 7797). The POST body is the batch itself, plain JSON:
 * `v: 2`, `iat`, `exp`, `jti` (unique per attempt), `events` (AuthEvents as `onEvent`
 * sees them) and `dropped` (events this forwarder dropped since its last delivered
 * batch, so the hub can show losses it would otherwise never learn about). The
 * signature travels in a header as `<protected header>..<signature>`; the protected
 * header is `{ alg, typ, b64: false, crit: ['b64'] }`, so the signature covers the
 * exact body bytes and the hub verifies them without base64url-decoding anything
 * (which is what made jose's verification cost 8-10 µs per event in version 1).
 *
 * The hub keeps its own copy of these constants (lib/hub/ingest.ts) because
 * stages only import backwards; spec/hub.ingest.spec.ts checks both agree.
 */
// A media type of its own, not application/json: an application-wide express.json()
// (type application/json by default) then leaves the signed bytes to the hub.
export const BATCH_CONTENT_TYPE = 'application/vnd.sqreen-auth.batch+json'

/**
 * The header carrying the detached JWS. Not `Authorization`: the signature vouches
 * for the body, it is not the caller's credential, and `Authorization` is what the
 * hub's own API (`Bearer`), an application's auth middleware or an authenticating
 * proxy in front of the hub read, and may replace or strip. A header of our own
 * passes through them untouched.
 */
export const BATCH_SIGNATURE_HEADER = 'sqreen-signature'

/**
 * The JWS `typ` header: a JWS signed with the same key for another purpose is not a
 * batch. Not `+jwt` as in version 1: with an unencoded payload it is not a JWT (RFC
 * 7797 section 7), and a version 1 token is refused by its `typ` as well.
 */
export const BATCH_TYP = 'sqreen-auth-batch'

export const WIRE_VERSION = 2
