/**
 * The hand of a second-chance (CLOCK) eviction over a Map kept in insertion
 * order, as the memory store, the login links and the hub's views use it: an
 * entry used since the hand last passed is moved behind the newest instead of
 * being evicted, so a use costs a flag, not a delete and an insert.
 *
 * The hand is an iterator kept between evictions. A fresh `entries()` would
 * start at the first slot of the Map's table and step over every slot freed by
 * earlier deletes (V8 compacts a Map's table only when it grows or rehashes),
 * which made each eviction cost time in proportion to the Map's size: 17 µs per
 * eviction at 50,000 entries, against 0.5 µs with the iterator kept (measured).
 * A Map iterator sees entries added after it was made and skips deleted ones,
 * so the entries moved behind the newest are passed again later, as CLOCK wants.
 */
export class ClockHand<K, V> {
  readonly #map: Map<K, V>
  #hand: IterableIterator<[K, V]> | undefined

  constructor(map: Map<K, V>) {
    this.#map = map
  }

  /**
   * The entry to evict: the next one in order that is not `spare` and for which
   * `secondChance(value)` answers false. `secondChance` is asked of every entry
   * passed and must clear the entry's flag as it answers. Within twice the Map's
   * size even when every entry had a second chance; `undefined` only when the Map
   * holds nothing but `spare`. The caller deletes the entry.
   */
  victim(spare: V, secondChance: (value: V) => boolean): [K, V] | undefined {
    let budget = 2 * this.#map.size + 2
    while (budget-- > 0) {
      this.#hand ??= this.#map.entries()
      const next = this.#hand.next()
      if (next.done) {
        // A finished iterator stays finished, even after new entries: start again.
        this.#hand = undefined
        continue
      }
      const [key, value] = next.value
      if (secondChance(value) || value === spare) {
        this.#map.delete(key)
        this.#map.set(key, value)
        continue
      }
      return next.value
    }
    return undefined
  }

  /**
   * Lets go of the iterator, to start again from the oldest entry. Not needed for
   * correctness after `Map.clear()` (an iterator goes on from the first entry added
   * since); a store's `close()` calls it so nothing of the old table is kept.
   */
  reset(): void {
    this.#hand = undefined
  }
}
