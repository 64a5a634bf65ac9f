import t from 'tap'
import {
  assignWindows,
  cleanupTime,
  eventTimeSessionWindows,
  fireTime,
  isWindowAssigner,
  isWindowLate,
  mergeSession,
  processingTimeSessionWindows,
  slidingEventTimeWindows,
  slidingProcessingTimeWindows,
  tumblingEventTimeWindows,
  tumblingProcessingTimeWindows,
  windowStart,
  windowsTouch,
  type TimeWindow,
} from '../../actors/time/windows.ts'
import { JobDefinitionError } from '../../index.ts'

t.test('windowStart - aligned to the slide and offset, negative timestamps included (Flink getWindowStartWithOffset)', async (t) => {
  t.equal(windowStart(0, 10, 0), 0)
  t.equal(windowStart(9, 10, 0), 0)
  t.equal(windowStart(10, 10, 0), 10)
  t.equal(windowStart(19, 10, 0), 10)
  t.equal(windowStart(-1, 10, 0), -10)
  t.equal(windowStart(-10, 10, 0), -10)
  t.equal(windowStart(-11, 10, 0), -20)
  t.equal(windowStart(2, 10, 3), -7)
  t.equal(windowStart(3, 10, 3), 3)
  t.equal(windowStart(12, 10, 3), 3)
  t.equal(windowStart(13, 10, -3), 7)
  // an hour window of a timestamp in 2026
  const ts = Date.UTC(2026, 10, 22, 10, 59, 12, 345)
  t.equal(windowStart(ts, 3_600_000, 0), Date.UTC(2026, 10, 22, 10))
})

t.test('assignWindows - tumbling: exactly one window [start, end) holds each timestamp', async (t) => {
  const a = tumblingEventTimeWindows(1000)
  t.same(assignWindows(a, 0), [{ start: 0, end: 1000 }])
  t.same(assignWindows(a, 999), [{ start: 0, end: 1000 }])
  t.same(assignWindows(a, 1000), [{ start: 1000, end: 2000 }])
  t.same(assignWindows(tumblingEventTimeWindows(1000, 250), 100), [{ start: -750, end: 250 }])
  for (let ts = -2500; ts < 2500; ts += 37) {
    const [w, ...rest] = assignWindows(a, ts)
    t.equal(rest.length, 0)
    t.ok(w!.start <= ts && ts < w!.end && w!.end - w!.start === 1000, `ts ${ts} in [${w!.start}, ${w!.end})`)
  }
})

t.test('assignWindows - sliding: size/slide windows, latest first, each holding the timestamp', async (t) => {
  const a = slidingEventTimeWindows(30, 10)
  t.same(assignWindows(a, 25), [
    { start: 20, end: 50 },
    { start: 10, end: 40 },
    { start: 0, end: 30 },
  ])
  t.same(assignWindows(a, 30), [
    { start: 30, end: 60 },
    { start: 20, end: 50 },
    { start: 10, end: 40 },
  ])
  // a size that is not a multiple of the slide
  t.same(assignWindows(slidingEventTimeWindows(25, 10), 24), [
    { start: 20, end: 45 },
    { start: 10, end: 35 },
    { start: 0, end: 25 },
  ])
  t.same(assignWindows(slidingEventTimeWindows(25, 10), 26), [
    { start: 20, end: 45 },
    { start: 10, end: 35 },
  ])
  // a slide larger than the size leaves gaps
  t.same(assignWindows(slidingEventTimeWindows(10, 30), 5), [{ start: 0, end: 10 }])
  t.same(assignWindows(slidingEventTimeWindows(10, 30), 15), [])
  for (let ts = -100; ts < 100; ts += 7) {
    const ws = assignWindows(a, ts)
    t.equal(ws.length, 3)
    t.ok(ws.every((w) => w.start <= ts && ts < w.end && (w.start % 10 === 0)), `ts ${ts}`)
  }
})

t.test('assignWindows - a session record opens [t, t + gap)', async (t) => {
  t.same(assignWindows(eventTimeSessionWindows(100), 42), [{ start: 42, end: 142 }])
})

t.test('fire and clean-up times - end - 1, plus the allowed lateness for event time', async (t) => {
  const w = { start: 0, end: 1000 }
  t.equal(fireTime(w), 999)
  t.equal(cleanupTime(w, 'event-time', 0), 999)
  t.equal(cleanupTime(w, 'event-time', 500), 1499)
  t.equal(cleanupTime(w, 'processing-time', 500), 999)
  t.notOk(isWindowLate(w, 'event-time', 0, 998))
  t.ok(isWindowLate(w, 'event-time', 0, 999))
  t.notOk(isWindowLate(w, 'event-time', 500, 1498))
  t.ok(isWindowLate(w, 'event-time', 500, 1499))
  t.notOk(isWindowLate(w, 'event-time', 0, -Infinity))
  t.ok(isWindowLate(w, 'event-time', 0, Infinity))
  t.notOk(isWindowLate(w, 'processing-time', 0, Infinity), 'processing-time windows are never late')
})

t.test('windowsTouch - overlapping or adjacent windows touch (Flink TimeWindow.intersects)', async (t) => {
  t.ok(windowsTouch({ start: 0, end: 10 }, { start: 5, end: 15 }))
  t.ok(windowsTouch({ start: 0, end: 10 }, { start: 10, end: 20 }), 'adjacent')
  t.ok(windowsTouch({ start: 10, end: 20 }, { start: 0, end: 10 }), 'adjacent, either order')
  t.ok(windowsTouch({ start: 0, end: 100 }, { start: 10, end: 20 }), 'contained')
  t.notOk(windowsTouch({ start: 0, end: 10 }, { start: 11, end: 20 }))
})

t.test('mergeSession - a new window joins every session it touches, and no other', async (t) => {
  const sessions: TimeWindow[] = [
    { start: 0, end: 10 },
    { start: 20, end: 30 },
    { start: 50, end: 60 },
  ]
  t.same(mergeSession(sessions, { start: 35, end: 45 }), { window: { start: 35, end: 45 }, merged: [] }, 'apart from all: a new session')
  t.same(mergeSession(sessions, { start: 22, end: 28 }), { window: { start: 20, end: 30 }, merged: [{ start: 20, end: 30 }] }, 'inside one: that session, unchanged')
  t.same(mergeSession(sessions, { start: 25, end: 35 }), { window: { start: 20, end: 35 }, merged: [{ start: 20, end: 30 }] }, 'extends one')
  t.same(
    mergeSession(sessions, { start: 5, end: 25 }),
    { window: { start: 0, end: 30 }, merged: [{ start: 0, end: 10 }, { start: 20, end: 30 }] },
    'bridges two',
  )
  t.same(
    mergeSession([...sessions].reverse(), { start: 10, end: 50 }),
    { window: { start: 0, end: 60 }, merged: [{ start: 0, end: 10 }, { start: 20, end: 30 }, { start: 50, end: 60 }] },
    'touches three at their edges; merged comes back in start order',
  )
  t.same(mergeSession([], { start: 1, end: 2 }), { window: { start: 1, end: 2 }, merged: [] })
})

t.test('mergeSession - folding records one by one gives the sessions of the sorted timestamps, in any order', async (t) => {
  // A seeded shuffle: the sessions must not depend on arrival order.
  let seed = 12345
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const gap = 10
  const times = [0, 3, 9, 19, 40, 41, 55, 100, 109, 111, 130, 200]
  // Sorted: a session ends where the next record is more than `gap` after the last one (touching merges).
  const expected: TimeWindow[] = []
  for (const ts of times) {
    const last = expected.at(-1)
    if (last !== undefined && ts <= last.end) expected[expected.length - 1] = { start: last.start, end: Math.max(last.end, ts + gap) }
    else expected.push({ start: ts, end: ts + gap })
  }
  for (let round = 0; round < 50; round++) {
    const order = [...times]
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[order[i], order[j]] = [order[j]!, order[i]!]
    }
    let sessions: TimeWindow[] = []
    for (const ts of order) {
      const { window, merged } = mergeSession(sessions, { start: ts, end: ts + gap })
      sessions = [...sessions.filter((s) => !merged.includes(s)), window]
    }
    t.same(sessions.sort((a, b) => a.start - b.start), expected, `order ${order.join(',')}`)
  }
})

t.test('assigners - validated when made, with a message that says what to pass', async (t) => {
  t.same(tumblingEventTimeWindows(60_000), { kind: 'tumbling', domain: 'event-time', sizeMs: 60_000, offsetMs: 0 })
  t.same(slidingProcessingTimeWindows(60_000, 10_000, -5_000), { kind: 'sliding', domain: 'processing-time', sizeMs: 60_000, slideMs: 10_000, offsetMs: -5_000 })
  t.same(processingTimeSessionWindows(5), { kind: 'session', domain: 'processing-time', gapMs: 5 })
  t.same(tumblingProcessingTimeWindows(10, 3), { kind: 'tumbling', domain: 'processing-time', sizeMs: 10, offsetMs: 3 })
  t.ok(Object.isFrozen(tumblingEventTimeWindows(1)))
  const bad: [string, () => unknown, RegExp][] = [
    ['zero size', () => tumblingEventTimeWindows(0), /tumblingEventTimeWindows: the size must be a positive whole number of milliseconds, got 0/],
    ['NaN size', () => tumblingEventTimeWindows(NaN), /got NaN/],
    ['fractional size', () => tumblingProcessingTimeWindows(1.5), /positive whole number/],
    ['string size', () => tumblingEventTimeWindows('60000' as unknown as number), /got 60000/],
    ['infinite size', () => tumblingEventTimeWindows(Infinity), /got Infinity/],
    ['offset as large as the size', () => tumblingEventTimeWindows(10, 10), /offset must be a whole number of milliseconds smaller in size than the size \(10\), got 10/],
    ['negative offset as large as the size', () => tumblingEventTimeWindows(10, -10), /got -10/],
    ['negative slide', () => slidingEventTimeWindows(10, -1), /slidingEventTimeWindows: the slide must be/],
    ['offset as large as the slide', () => slidingEventTimeWindows(100, 10, 10), /smaller in size than the slide \(10\)/],
    ['zero gap', () => eventTimeSessionWindows(0), /eventTimeSessionWindows: the gap must be/],
    ['NaN gap', () => processingTimeSessionWindows(NaN), /processingTimeSessionWindows: the gap/],
  ]
  for (const [what, make, message] of bad) t.throws(make, { name: 'JobDefinitionError', message }, what)
  t.throws(() => tumblingEventTimeWindows(0), JobDefinitionError)
})

t.test('isWindowAssigner - only the factories\' shapes', async (t) => {
  t.ok(isWindowAssigner(eventTimeSessionWindows(1)))
  t.notOk(isWindowAssigner(undefined))
  t.notOk(isWindowAssigner(60_000))
  t.notOk(isWindowAssigner({ kind: 'tumbling' }))
  t.notOk(isWindowAssigner({ kind: 'hopping', domain: 'event-time' }))
})
