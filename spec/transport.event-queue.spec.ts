/**
 * The forwarder's ring buffer (lib/transport/event-queue.ts) against a plain array as the
 * model, over random sequences of push, drop-oldest, take and put-back (fast-check): the
 * same items in the same order after every step, across growth and wrap-around.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { EventQueue } from '../lib/transport/event-queue.js'

type Step =
  | { readonly kind: 'push'; readonly n: number }
  | { readonly kind: 'drop'; readonly n: number }
  | { readonly kind: 'take'; readonly n: number }
  | { readonly kind: 'takeAndPutBack'; readonly n: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('drop' as const), n: fc.integer({ min: 1, max: 10 }) }),
  fc.record({ kind: fc.constant('take' as const), n: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('takeAndPutBack' as const), n: fc.integer({ min: 0, max: 30 }) }),
)

describe('EventQueue (the forwarder ring buffer)', () => {
  it('keeps the same items in the same order as an array, through growth and wrap-around', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(step, { maxLength: 60 }), (capacity, steps) => {
        const queue = new EventQueue<number>(capacity)
        let model: number[] = []
        let next = 0
        for (const s of steps) {
          if (s.kind === 'push') {
            for (let i = 0; i < s.n; i++) {
              queue.push(next)
              model.push(next++)
            }
          } else if (s.kind === 'drop') {
            for (let i = 0; i < s.n; i++) {
              queue.dropOldest()
              model.shift()
            }
          } else if (s.kind === 'take') {
            assert.deepEqual(queue.take(s.n), model.slice(0, s.n))
            model = model.slice(s.n)
          } else {
            const taken = queue.take(s.n)
            assert.deepEqual(taken, model.slice(0, s.n))
            queue.push(next)
            model = [...model.slice(s.n), next++]
            queue.putBack(taken)
            model = [...taken, ...model]
          }
          assert.equal(queue.length, model.length)
          for (let i = 0; i < model.length; i++) assert.equal(queue.at(i), model[i])
          assert.equal(queue.at(model.length), undefined)
        }
        queue.clear()
        assert.equal(queue.length, 0)
        assert.deepEqual(queue.take(5), [])
      }),
      { numRuns: 300 },
    )
  })
})
