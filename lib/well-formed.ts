/**
 * The text with each lone surrogate (half of a UTF-16 pair, which no UTF-8 can carry)
 * replaced by U+FFFD, as any UTF-8 on the way would (a Redis key, a hash, a URL).
 * `String.prototype.toWellFormed` does the same from ES2024; this compiles for ES2023.
 */
export const wellFormed = (text: string): string =>
  // The plain scan first: nearly every string has no surrogate at all.
  SURROGATE.test(text) ? text.replace(LONE_SURROGATE, '\uFFFD') : text

const SURROGATE = /[\uD800-\uDFFF]/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
