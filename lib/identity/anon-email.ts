import { domainToASCII } from 'node:url'
import { SqreenAuthError } from '../errors.js'

const ID = /^[A-Za-z0-9._~-]{1,64}$/
const ANON = /^anon-[A-Za-z0-9._~-]{1,64}@[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/

/**
 * `anon-<id>@<domain>`: an e-mail that keeps only the domain, so throwaway-mail
 * and relay checks still work while the local part (personal data) is replaced
 * by the user's id. The domain is lower-cased and internationalised domains are
 * converted to ASCII (punycode), so one domain always gives one string.
 *
 * @example anonEmail(42, 'Jane.Doe@Example.COM') // 'anon-42@example.com'
 */
export const anonEmail = (id: string | number, email: string): string => {
  const idText = typeof id === 'number' && Number.isFinite(id) ? String(id) : id
  if (typeof idText !== 'string' || !ID.test(idText)) {
    throw new SqreenAuthError(
      'ERR_SQREEN_ANON_EMAIL',
      'anonEmail(id, email): "id" must be a number or a string of 1-64 letters, digits, ".", "_", "~" or "-".',
    )
  }
  const at = typeof email === 'string' ? email.lastIndexOf('@') : -1
  const domain =
    at === -1
      ? ''
      : domainToASCII(
          email
            .slice(at + 1)
            .trim()
            .replace(/\.$/, '')
            .toLowerCase(),
        )
  if (domain === '' || !domain.includes('.')) {
    throw new SqreenAuthError(
      'ERR_SQREEN_ANON_EMAIL',
      'anonEmail(id, email): "email" must be an e-mail address with a valid domain.',
    )
  }
  return `anon-${idText}@${domain}`
}

/** Whether a value already has the `anon-<id>@<domain>` form. */
export const isAnonEmail = (value: string): boolean => ANON.test(value)

/**
 * Anything that holds an address shaped like `local@domain`, alone or inside text
 * (`Jane <jane@example.com>`, `mailto:jane@example.com`, `jane@example.com (work)`):
 * advanced mode refuses such values unless anonymised. Delimiters that commonly wrap an
 * address in text are not part of it, so the address is found wherever it sits; a local part may be quoted (`"jane"@example.com`).
 */
// One character each side is enough to find one (and linear: a `+` each side backtracks).
// The second form is an address literal: `jane@[192.0.2.1]`.
const ADDRESS_INSIDE = /[^\s@<>()[\],;:]@(?:[^\s@<>()[\]"',;:]|\[[0-9A-Fa-f:.])/
/**
 * The `@` as text often carries it: percent-encoded (a URL, `email=jane%40example.com`),
 * an HTML character reference, or a full-width or small commercial at.
 */
const ENCODED_AT = /%40|&#0*64;|&#x0*40;|\uFF20|\uFE6B/gi
export const looksLikeEmail = (value: string): boolean => {
  if (ADDRESS_INSIDE.test(value)) return true
  ENCODED_AT.lastIndex = 0
  if (!ENCODED_AT.test(value)) return false
  return ADDRESS_INSIDE.test(value.replace(ENCODED_AT, '@'))
}
