import { KeyObject, webcrypto } from 'node:crypto'

/** A key as jose takes it. */
export type JoseKey = KeyObject | Uint8Array | webcrypto.CryptoKey

/**
 * The key as jose uses it fastest, prepared on first use: an HS256 secret imported once as
 * a `CryptoKey` (given bytes, jose imports them again for every signature or verification;
 * in a CPU profile of the hub under load that import was about 1% of its busy time), any
 * other key as it is (jose converts a `KeyObject` once and caches it). A failed import is
 * not kept: the next call tries again.
 */
export const preparedJoseKey = (
  alg: string,
  key: KeyObject | Uint8Array,
  usage: 'sign' | 'verify',
): (() => Promise<JoseKey>) => {
  let ready: Promise<JoseKey> | undefined
  return () => {
    ready ??= (
      alg === 'HS256'
        ? webcrypto.subtle.importKey(
            'raw',
            key instanceof KeyObject ? key.export() : key,
            { name: 'HMAC', hash: 'SHA-256' },
            false,
            [usage],
          )
        : Promise.resolve(key)
    ).catch((err: unknown) => {
      ready = undefined
      throw err
    })
    return ready
  }
}
