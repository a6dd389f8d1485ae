/** '000Z' … '999Z': the end of an ISO time, by milliseconds. */
const MILLIS = Array.from({ length: 1000 }, (_, ms) => `${String(ms).padStart(3, '0')}Z`)

/** The last time a Date can hold (ECMA-262: 8.64e15 ms after the epoch). */
const MAX_TIME = 8.64e15

/**
 * A formatter of epoch milliseconds as `Date.prototype.toISOString` does, for event
 * times. Formatting a Date goes through a C++ builtin, and on a login's path (cold
 * caches: one event between many requests) it cost several µs per event in a server
 * profile (bench/README). The text up to the second is formatted once per second and
 * the milliseconds come from a table. Each formatter remembers its own last second.
 */
export const isoTimeFormatter = (): ((at: number) => string) => {
  let second = Number.NaN
  let secondIso = ''
  return (at) => {
    // Anything but a whole, non-negative, valid time is Date's to format (or refuse).
    if (!Number.isInteger(at) || at < 0 || at > MAX_TIME) return new Date(at).toISOString()
    const ms = at % 1000
    if (at - ms !== second) {
      // 'YYYY-MM-DDTHH:MM:SS.' (or '+YYYYYY-…' past year 9999): everything before the milliseconds.
      const iso = new Date(at - ms).toISOString()
      secondIso = iso.slice(0, iso.length - 4)
      second = at - ms
    }
    return secondIso + (MILLIS[ms] as string)
  }
}
