/**
 * The forwarder's queue: a ring buffer (a deque). Pushing, dropping the oldest and taking a
 * batch from the front never copy what is queued, so no `push` (on the request path)
 * pays for the queue's size: an array with a moving head had to be compacted from time
 * to time, a copy of up to `maxQueued` events inside one login (38 ms at 1,000,000).
 * A batch the hub did not take goes back to the front in order. Slots are cleared when
 * their item leaves, so a dropped event is not kept alive. The capacity doubles when full
 * (amortised, and bounded since the forwarder bounds what it queues) and never shrinks.
 */
export class EventQueue<T> {
  #items: (T | undefined)[]
  #head = 0
  #length = 0

  constructor(initialCapacity = 64) {
    let capacity = 1
    while (capacity < initialCapacity) capacity *= 2
    this.#items = new Array<T | undefined>(capacity)
  }

  get length(): number {
    return this.#length
  }

  /** The item `i` places from the front (0 is the oldest). */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.#length) return undefined
    return this.#items[(this.#head + i) & (this.#items.length - 1)]
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow(this.#length + 1)
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = item
    this.#length++
  }

  /** Removes the oldest item (nothing when empty). */
  dropOldest(): void {
    if (this.#length === 0) return
    this.#items[this.#head] = undefined
    this.#head = (this.#head + 1) & (this.#items.length - 1)
    this.#length--
  }

  /** Removes and returns up to `n` items from the front, oldest first. */
  take(n: number): T[] {
    const count = Math.min(n, this.#length)
    const out = new Array<T>(count)
    const mask = this.#items.length - 1
    for (let i = 0; i < count; i++) {
      const at = (this.#head + i) & mask
      out[i] = this.#items[at] as T
      this.#items[at] = undefined
    }
    this.#head = (this.#head + count) & mask
    this.#length -= count
    return out
  }

  /** Puts `items` back in front, in their order (the first of them becomes the oldest). */
  putBack(items: readonly T[]): void {
    if (items.length === 0) return
    if (this.#length + items.length > this.#items.length) this.#grow(this.#length + items.length)
    const mask = this.#items.length - 1
    this.#head = (this.#head - items.length) & mask
    for (let i = 0; i < items.length; i++) this.#items[(this.#head + i) & mask] = items[i]
    this.#length += items.length
  }

  clear(): void {
    this.#items = new Array<T | undefined>(this.#items.length)
    this.#head = 0
    this.#length = 0
  }

  /** A larger ring, items moved to its start in order: at least `needed` slots. */
  #grow(needed: number): void {
    let capacity = this.#items.length * 2
    while (capacity < needed) capacity *= 2
    const next = new Array<T | undefined>(capacity)
    for (let i = 0; i < this.#length; i++) next[i] = this.#items[(this.#head + i) & (this.#items.length - 1)]
    this.#items = next
    this.#head = 0
  }
}
