/**
 * One string per distinct value of a field that repeats across events (user agents, IPs).
 * `JSON.parse` gives every event its own copy of each string, and the hub keeps events for
 * a while (the reorder window, 50 per user in its views): a 130-character user agent kept
 * 500,000 times is 70 MB of copies of a handful of values. Bounded: past `max` distinct
 * values it starts again (a burst of unique values costs a lookup each, never memory).
 */
export class Interner {
  readonly #values = new Map<string, string>()

  constructor(readonly max: number) {}

  /** The first string seen equal to `value` (or `value` itself). */
  intern(value: string): string {
    const known = this.#values.get(value)
    if (known !== undefined) return known
    if (this.#values.size >= this.max) this.#values.clear()
    this.#values.set(value, value)
    return value
  }
}
