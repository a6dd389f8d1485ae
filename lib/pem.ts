/**
 * A key given as a Buffer that holds a PEM (what `readFileSync('key.pem')` returns without
 * an encoding), as the PEM text it is; anything else unchanged. Key options take a string
 * or Buffer as an HS256 secret, so such a Buffer was taken for a secret: a hub handed its
 * forwarders' Ed25519 *public* key that way verified HS256 batches with the public key's
 * bytes, which anyone who has the public key can sign.
 */
export const pemAsText = (value: unknown): unknown => {
  if (!Buffer.isBuffer(value)) return value
  // Leading whitespace as in a string PEM; at most a few bytes of it are looked at.
  let start = 0
  while (start < value.length && start < 64 && (value[start] === 0x20 || (value[start] as number) <= 0x0d)) start++
  return value.subarray(start, start + 10).toString('latin1') === '-----BEGIN' ? value.toString('utf8') : value
}
