import { Buffer } from 'node:buffer'

/**
 * Reused memory for batch bodies. A batch of 500 events is about 270 KB, and a buffer that
 * large is given fresh pages by the kernel each time it is allocated: measured on the 2-core
 * VM of bench/README, `Buffer.concat` of a 150 KB body cost 400 µs of CPU, 37 page faults,
 * for a copy that takes a few µs once the pages are there (a fault costs about 10 µs here).
 * Bodies are therefore copied into buffers kept from one batch to the next.
 *
 * Bounded: a buffer is kept only while the idle ones add up to at most `maxIdleBytes`, and
 * the hub holds at most `limits.concurrency` bodies at once anyway. A buffer taken must be
 * given back only once nothing reads the body any more (the ingest parses it into a string
 * first thing, and the router gives it back after the ingest has answered).
 */
export class BodyPool {
  readonly #idle: Buffer[] = []
  #idleBytes = 0
  /** Bodies handed out and not given back: `give` ignores anything else (a body parser's buffer, a second give). */
  readonly #out = new WeakSet<Buffer>()

  constructor(readonly maxIdleBytes: number) {}

  /** The `size` bytes of `chunks`, in a buffer of the pool (or a new one, which may join it). */
  take(chunks: readonly Buffer[], size: number): Buffer {
    let buffer: Buffer | undefined
    // The smallest idle buffer that fits: there are a handful at most.
    let best = -1
    for (let i = 0; i < this.#idle.length; i++) {
      const candidate = this.#idle[i] as Buffer
      if (candidate.length >= size && (best === -1 || candidate.length < (this.#idle[best] as Buffer).length)) best = i
    }
    if (best !== -1) {
      buffer = this.#idle[best] as Buffer
      this.#idle.splice(best, 1)
      this.#idleBytes -= buffer.length
    } else {
      // Room to grow (a power of two from 64 KB), so the next, slightly larger batch fits too.
      let capacity = 65_536
      while (capacity < size) capacity *= 2
      buffer = Buffer.allocUnsafeSlow(capacity)
    }
    let at = 0
    for (const chunk of chunks) {
      chunk.copy(buffer, at)
      at += chunk.length
    }
    const body = buffer.subarray(0, size)
    this.#out.add(body)
    return body
  }

  /** Gives back a body `take` returned (its whole buffer); anything else is ignored, and it is dropped when the pool is full. */
  give(body: Buffer): void {
    if (!this.#out.delete(body)) return
    const buffer = Buffer.from(body.buffer)
    if (this.#idleBytes + buffer.length > this.maxIdleBytes) return
    this.#idle.push(buffer)
    this.#idleBytes += buffer.length
  }
}
