import { createPublicKey, KeyObject } from 'node:crypto'
import { SqreenAuthError, type SqreenAuthErrorCode } from '../errors.js'
import { pemAsText } from '../pem.js'

/** A key that verifies JWTs, pinned to the one algorithm it is meant for. */
export interface VerificationKey {
  readonly alg: 'HS256' | 'EdDSA' | 'RS256' | 'ES256' | 'ES384'
  readonly key: KeyObject | Uint8Array
}

export const MIN_HMAC_BYTES = 32

const ASYMMETRIC: Record<string, VerificationKey['alg'] | undefined> = {
  ed25519: 'EdDSA',
  rsa: 'RS256',
}

const fromKeyObject = (
  key: KeyObject,
  name: string,
  code: SqreenAuthErrorCode,
  allowed: readonly VerificationKey['alg'][],
): VerificationKey => {
  const fail = (message: string): never => {
    throw new SqreenAuthError(code, message)
  }
  if (key.type === 'secret') {
    if ((key.symmetricKeySize ?? 0) < MIN_HMAC_BYTES)
      fail(`"${name}" is an HS256 secret of ${key.symmetricKeySize} bytes; it must have at least ${MIN_HMAC_BYTES}.`)
    return { alg: 'HS256', key }
  }
  // A private key works too (its public half is derived), but the hub never needs one.
  const pub = key.type === 'private' ? createPublicKey(key) : key
  let alg = ASYMMETRIC[pub.asymmetricKeyType ?? '']
  if (pub.asymmetricKeyType === 'ec') {
    const curve = pub.asymmetricKeyDetails?.namedCurve
    alg = curve === 'prime256v1' ? 'ES256' : curve === 'secp384r1' ? 'ES384' : undefined
  }
  if (alg === undefined || !allowed.includes(alg)) {
    return fail(
      `"${name}" is a ${pub.asymmetricKeyType ?? 'unknown'} key; expected ${allowed.map((a) => (a === 'HS256' ? 'an HS256 secret' : a === 'EdDSA' ? 'an Ed25519 public key' : `an ${a} public key`)).join(' or ')}.`,
    )
  }
  return { alg, key: pub }
}

/**
 * Resolves a verification key once, at setup: a PEM string or a `KeyObject` is a
 * public key (its algorithm follows from its type), any other string or Buffer an
 * HS256 secret of at least 32 bytes. Verification then accepts that one algorithm
 * only, so `alg: none` and HS256-signed-with-the-public-key tokens are refused.
 */
export const verificationKey = (
  input: unknown,
  name: string,
  code: SqreenAuthErrorCode,
  allowed: readonly VerificationKey['alg'][],
): VerificationKey => {
  const value = pemAsText(input)
  const fail = (message: string): never => {
    throw new SqreenAuthError(code, message)
  }
  if (value instanceof KeyObject) return fromKeyObject(value, name, code, allowed)
  if (typeof value === 'string' && value.trimStart().startsWith('-----BEGIN')) {
    let key: KeyObject | undefined
    try {
      key = createPublicKey(value)
    } catch {
      return fail(`"${name}" looks like a PEM but is not a readable key ("BEGIN PUBLIC KEY" expected).`)
    }
    return fromKeyObject(key, name, code, allowed)
  }
  let bytes: Buffer | undefined
  if (typeof value === 'string') bytes = Buffer.from(value, 'utf8')
  else if (Buffer.isBuffer(value)) bytes = Buffer.from(value)
  if (bytes === undefined) {
    return fail(
      `"${name}" must be an HS256 secret (a string or Buffer of at least ${MIN_HMAC_BYTES} bytes) or a public key (a KeyObject or PEM), got ${value === null ? 'null' : typeof value}.`,
    )
  }
  if (!allowed.includes('HS256')) return fail(`"${name}" must be a public key (a KeyObject or PEM).`)
  if (bytes.length < MIN_HMAC_BYTES) {
    return fail(
      `"${name}" is an HS256 secret of ${bytes.length} bytes; it must have at least ${MIN_HMAC_BYTES} (e.g. \`openssl rand -base64 48\`).`,
    )
  }
  return { alg: 'HS256', key: new Uint8Array(bytes) }
}
