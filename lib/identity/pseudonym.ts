import { createHmac } from 'node:crypto'
import { wellFormed } from '../well-formed.js'

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/

/**
 * Logins are compared case-insensitively after Unicode NFKC normalisation, so
 * "Alice", " alice" and "ａlice" are one account for brute-force counting. A lone
 * surrogate (a JSON body may hold `"\ud800"`) becomes U+FFFD first: the key is then the
 * same in every store (Redis sees UTF-8) and can be written into a link.
 */
export const normaliseLogin = (login: string): string =>
  // NFKC leaves ASCII unchanged, and calling into ICU costs more than this test.
  (PRINTABLE_ASCII.test(login) ? login : wellFormed(login).normalize('NFKC')).trim().toLowerCase()

/**
 * A keyed hash, never a plain one: a plain SHA-256 of an e-mail address can be
 * reversed by hashing a list of known addresses; an HMAC cannot without the key.
 */
export const loginPseudonym = (secret: Buffer, login: string): string =>
  createHmac('sha256', secret).update(normaliseLogin(login)).digest('base64url')
