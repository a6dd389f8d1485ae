import { createHmac } from 'node:crypto'
import { wellFormed } from '../well-formed.js'

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/

/**
 * Logins are compared case-insensitively after Unicode NFKC normalisation, so
 * "Alice", " alice" and "ａlice" are one account for brute-force counting. A lone
 * surrogate (a JSON body may hold `"\ud800"`) becomes U+FFFD first: the key is then the
 * same in every store (Redis sees UTF-8) and can be written into a link.
 */
export const normaliseLogin = (login: string): string => {
  // NFKC leaves ASCII unchanged, and calling into ICU costs more than this test.
  if (PRINTABLE_ASCII.test(login)) return login.trim().toLowerCase()
  return cut(wellFormed(login).normalize('NFKC').trim().toLowerCase())
}

/** Longest normalised login, UTF-16 code units: capture already cuts what was typed to as much. */
const MAX_NORMALISED = 256

/**
 * NFKC and lower-casing can make a login much longer than typed (U+FDFA becomes 18
 * characters, `İ` two): 250 of them made 4,600-character keys, which the hub refused
 * (its limits are 512 for a key, 256 for an identity value) and which filled a memory store
 * about five times faster than its budget per key allows (a 256 MB heap ran out). Cut back
 * to 256, never between the two halves of a pair.
 */
const cut = (text: string): string => {
  if (text.length <= MAX_NORMALISED) return text
  const last = text.charCodeAt(MAX_NORMALISED - 1)
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_NORMALISED - 1 : MAX_NORMALISED)
}

/**
 * A keyed hash, never a plain one: a plain SHA-256 of an e-mail address can be
 * reversed by hashing a list of known addresses; an HMAC cannot without the key.
 */
export const loginPseudonym = (secret: Buffer, login: string): string =>
  createHmac('sha256', secret).update(normaliseLogin(login)).digest('base64url')
