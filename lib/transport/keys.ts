import { createPrivateKey, KeyObject } from 'node:crypto'
import { SqreenAuthError } from '../errors.js'
import { pemAsText } from '../pem.js'

/** What `forward.key` accepts: a shared HS256 secret, or an Ed25519 private key (KeyObject or PKCS#8 PEM). */
export type ForwardKeyInput = string | Buffer | KeyObject

/** A resolved signing key: the algorithm is decided by the key, never by a separate option that could disagree. */
export interface SigningKey {
  readonly alg: 'HS256' | 'EdDSA'
  readonly key: KeyObject | Uint8Array
}

/** RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits). */
export const MIN_HMAC_BYTES = 32

const fail = (message: string): never => {
  throw new SqreenAuthError('ERR_SQREEN_FORWARD_KEY', message)
}

const fromKeyObject = (key: KeyObject, name: string): SigningKey => {
  if (key.type === 'secret') {
    if ((key.symmetricKeySize ?? 0) < MIN_HMAC_BYTES)
      fail(`"${name}" is an HS256 secret of ${key.symmetricKeySize} bytes; it must have at least ${MIN_HMAC_BYTES}.`)
    return { alg: 'HS256', key }
  }
  if (key.type === 'public') {
    return fail(
      `"${name}" is a public key: the forwarder signs with the Ed25519 *private* key, and the hub holds the public one.`,
    )
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    return fail(
      `"${name}" is a ${key.asymmetricKeyType ?? 'unknown'} private key; only Ed25519 (EdDSA) keys or an HS256 secret are supported. Generate one with \`openssl genpkey -algorithm ed25519\`.`,
    )
  }
  return { alg: 'EdDSA', key }
}

/**
 * Resolves `forward.key` once, at setup. A PEM string is an Ed25519 private key;
 * any other string or Buffer is a shared HS256 secret of at least 32 bytes.
 */
export const signingKey = (input: unknown, name = 'forward.key'): SigningKey => {
  const value = pemAsText(input)
  if (value instanceof KeyObject) return fromKeyObject(value, name)
  if (typeof value === 'string' && value.trimStart().startsWith('-----BEGIN')) {
    if (/-----BEGIN PUBLIC KEY-----/.test(value)) {
      return fail(
        `"${name}" is a public key PEM: the forwarder signs with the Ed25519 *private* key, and the hub holds the public one.`,
      )
    }
    let key: KeyObject | undefined
    try {
      key = createPrivateKey(value)
    } catch {
      return fail(`"${name}" looks like a PEM but is not a readable private key (PKCS#8 "BEGIN PRIVATE KEY" expected).`)
    }
    return fromKeyObject(key, name)
  }
  let bytes: Buffer | undefined
  if (typeof value === 'string') bytes = Buffer.from(value, 'utf8')
  else if (Buffer.isBuffer(value)) bytes = Buffer.from(value)
  if (bytes === undefined) {
    return fail(
      `"${name}" must be an HS256 secret (a string or Buffer of at least ${MIN_HMAC_BYTES} bytes) or an Ed25519 private key (a KeyObject or PEM), got ${value === null ? 'null' : typeof value}.`,
    )
  }
  if (bytes.length < MIN_HMAC_BYTES) {
    return fail(
      `"${name}" is an HS256 secret of ${bytes.length} bytes; it must have at least ${MIN_HMAC_BYTES} (e.g. \`openssl rand -base64 48\`).`,
    )
  }
  return { alg: 'HS256', key: new Uint8Array(bytes) }
}
