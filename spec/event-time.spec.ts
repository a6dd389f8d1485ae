/**
 * `eventTime` reads an event's `at` by position when it has the `toISOString()` form and
 * hands everything else to `Date.parse`: it must answer exactly as `Date.parse` does,
 * for real times and for near-misses (one character changed, cut or added).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { eventTime } from '../lib/event.js'
import { isoTimeFormatter } from '../lib/identity/iso-time.js'

const iso = fc.integer({ min: -62_000_000_000_000, max: 250_000_000_000_000 }).map((ms) => new Date(ms).toISOString())

const nearMiss = fc
  .tuple(iso, fc.nat(), fc.string({ minLength: 0, maxLength: 2 }), fc.nat(2))
  .map(([s, at, text, cut]) => {
    const i = at % (s.length + 1)
    return s.slice(0, i) + text + s.slice(i + cut)
  })

describe('eventTime', () => {
  it('reads every toISOString() time as Date.parse does', () => {
    fc.assert(
      fc.property(iso, (s) => {
        assert.equal(eventTime(s), Date.parse(s), s)
      }),
      { numRuns: 20_000 },
    )
  })

  it('answers near-misses exactly as Date.parse (NaN included)', () => {
    fc.assert(
      fc.property(nearMiss, (s) => {
        assert.ok(Object.is(eventTime(s), Date.parse(s)), `${JSON.stringify(s)}: ${eventTime(s)} vs ${Date.parse(s)}`)
      }),
      { numRuns: 20_000 },
    )
    for (const s of [
      '2026-02-30T00:00:00.000Z',
      '2026-13-01T00:00:00.000Z',
      '2026-12-03T24:00:00.000Z',
      '0099-01-01T00:00:00.000Z',
      '2026-12-03T18:32:03.123+01:00',
      '',
    ]) {
      assert.ok(Object.is(eventTime(s), Date.parse(s)), s)
    }
  })

  it('keeps its last answer only for the same text (the hub reads each time three times)', () => {
    // Sequences of times read one, two or three times in a row, equal text in new strings
    // included: each answer must be its own text's, never the one before it.
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.oneof(iso, nearMiss), fc.integer({ min: 1, max: 3 })), { maxLength: 20 }),
        (reads) => {
          for (const [s, times] of reads) {
            for (let k = 0; k < times; k++) {
              const copy = k === 1 ? [...s].join('') : s
              assert.ok(Object.is(eventTime(copy), Date.parse(s)), `${JSON.stringify(s)} read ${k + 1} times`)
            }
          }
        },
      ),
      { numRuns: 2_000 },
    )
  })
})

describe('isoTimeFormatter', () => {
  const real = (ms: number): string => new Date(ms).toISOString()

  it('formats as toISOString(), one formatter over sequences of times (same second, next, back)', () => {
    const time = fc.oneof(
      fc.integer({ min: 0, max: 8_640_000_000_000_000 }),
      fc.integer({ min: 1_700_000_000_000, max: 1_700_000_005_000 }),
      fc.double({ min: -1e13, max: 1e13, noNaN: true }),
    )
    fc.assert(
      fc.property(fc.array(time, { minLength: 1, maxLength: 30 }), (times) => {
        const format = isoTimeFormatter()
        for (const at of times) assert.equal(format(at), real(at), String(at))
      }),
      { numRuns: 5_000 },
    )
  })

  it('crosses second, day and year boundaries, the epoch and year 10000', () => {
    const format = isoTimeFormatter()
    const edges = [0, 999, 1000, 1001, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1)]
    edges.push(Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1, 0, 0, 0, 7), 8_640_000_000_000_000)
    for (const at of [...edges, ...edges.reverse()]) assert.equal(format(at), real(at), String(at))
  })

  it('throws for an invalid time, as toISOString() does', () => {
    const format = isoTimeFormatter()
    assert.throws(() => format(Number.NaN), RangeError)
    assert.throws(() => format(8_640_000_000_000_001), RangeError)
  })
})
