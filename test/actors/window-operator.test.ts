/**
 * The window operator's semantics, driven by the harness of test/support/window-harness.ts (real
 * strict keyed state, the timers contract of issue 7 emulated). The same operator in real jobs,
 * with checkpoints and crashes, is tested in test/actors/windows-runtime.test.ts.
 */
import t from 'tap'
import type { Key } from '../../actors/state/key-groups.ts'
import type { WindowAggregator, WindowContents } from '../../actors/time/window-spec.ts'
import {
  eventTimeSessionWindows,
  processingTimeSessionWindows,
  slidingEventTimeWindows,
  tumblingEventTimeWindows,
  tumblingProcessingTimeWindows,
  type TimeWindow,
} from '../../actors/time/windows.ts'
import { WindowHarness } from '../support/window-harness.ts'
import { generatorSource, job, outputTag } from '../../index.ts'

const sum: WindowContents = { kind: 'reduce', reduce: (a, b) => (a as number) + (b as number) }
const late = outputTag<unknown>('late')

interface Out {
  key: Key
  window: TimeWindow
  value: unknown
}
const fmt = (o: unknown) => {
  const r = o as Out
  return `${String(r.key)}[${r.window.start},${r.window.end})=${JSON.stringify(r.value)}`
}

t.test('tumbling event time - out-of-order records within the watermark, one result per key and window when the watermark passes end - 1', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum })
  h.element('a', 1, 3)
  h.element('a', 2, 12)
  h.element('b', 5, 8)
  h.element('a', 4, 1) // out of order, before the watermark passed 9
  h.advanceWatermark(8)
  t.same(h.out, [], 'nothing before the watermark reaches 9')
  h.advanceWatermark(9)
  t.same(h.out.map(fmt), ['a[0,10)=5', 'b[0,10)=5'])
  h.element('a', 100, 5) // late: the window [0, 10) is gone, no lateness
  h.advanceWatermark(19)
  t.same(h.out.map(fmt), ['a[0,10)=5', 'b[0,10)=5', 'a[10,20)=2'])
  t.same(h.pendingTimers('event-time'), [], 'no timer left')
  t.equal(h.backend.keyCount(), 0, 'no state left after the windows fired (no lateness)')
})

t.test('tumbling event time - a record for a fired window is dropped, or sent to the late output', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum, lateTag: late })
  h.element('a', 1, 3)
  h.advanceWatermark(15)
  h.element('a', 7, 9)
  h.element('a', 8, 10) // not late: [10, 20) is open
  h.advanceWatermark(Infinity)
  t.same(h.out.map(fmt), ['a[0,10)=1', 'a[10,20)=8'])
  t.same(h.side.get('late'), [7])
})

t.test('allowed lateness - a late record within it fires the window again with the new value; later ones go to the late output', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum, lateness: 5, lateTag: late })
  h.element('a', 1, 2)
  h.advanceWatermark(9)
  t.same(h.out.map(fmt), ['a[0,10)=1'])
  h.element('a', 10, 4) // watermark 9 <= 9 + 5: within the lateness
  t.same(h.out.map(fmt), ['a[0,10)=1', 'a[0,10)=11'], 'fired again at once with the record in')
  h.advanceWatermark(13)
  h.element('a', 100, 5)
  t.same(h.out.map(fmt), ['a[0,10)=1', 'a[0,10)=11', 'a[0,10)=111'])
  h.advanceWatermark(14) // clean-up time 9 + 5
  t.equal(h.backend.keyCount(), 0, 'the window state is cleared at end - 1 + lateness')
  h.element('a', 1000, 6)
  t.same(h.side.get('late'), [1000], 'past the lateness: late output')
  t.equal(h.out.length, 3)
  // a window first opened by a record within the lateness fires at once
  h.element('b', 7, 8)
  t.same(h.out.map(fmt).slice(3), [], 'watermark 14 is past b[0,10) clean-up (14): late')
  t.same(h.side.get('late'), [1000, 7])
  h.element('c', 3, 11) // [10, 20): not due yet
  h.advanceWatermark(19)
  t.same(h.out.map(fmt).slice(3), ['c[10,20)=3'])
  h.element('c', 4, 15)
  t.same(h.out.map(fmt).slice(3), ['c[10,20)=3', 'c[10,20)=7'])
})

t.test('sliding event time - each record counts in size/slide windows', async (t) => {
  const h = new WindowHarness({ assigner: slidingEventTimeWindows(20, 10), contents: sum })
  h.element('a', 1, 5)
  h.element('a', 10, 15)
  h.element('a', 100, 25)
  h.end()
  t.same(h.out.map(fmt), ['a[-10,10)=1', 'a[0,20)=11', 'a[10,30)=110', 'a[20,40)=100'])
})

t.test('session windows - records less than a gap apart share a session; a bridging record merges two, accumulators merged', async (t) => {
  const avg: WindowAggregator<number, { sum: number; n: number }, number> = {
    createAccumulator: () => ({ sum: 0, n: 0 }),
    add: (a, v) => ({ sum: a.sum + v, n: a.n + 1 }),
    getResult: (a) => a.sum / a.n,
    merge: (a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }),
  }
  const h = new WindowHarness({ assigner: eventTimeSessionWindows(10), contents: { kind: 'aggregate', aggregator: avg as WindowAggregator<unknown, unknown, unknown> } })
  h.element('a', 2, 0)
  h.element('a', 4, 25)
  h.element('a', 6, 5)
  t.same(h.pendingTimers('event-time'), [14, 34], 'one timer per session (the merged-away end 9 deleted)')
  h.element('a', 0, 15) // touches [0, 15) and [25, 35)
  t.same(h.pendingTimers('event-time'), [34])
  h.element('a', 30, 50)
  h.advanceWatermark(Infinity)
  t.same(h.out.map(fmt), ['a[0,35)=3', 'a[50,60)=30'])
})

t.test('session windows - process gets every record of the merged session, reduce merges with the reduce function', async (t) => {
  const p = new WindowHarness({ assigner: eventTimeSessionWindows(10), contents: { kind: 'process', fn: (_k, _w, rs) => [...rs].sort() } })
  const r = new WindowHarness({ assigner: eventTimeSessionWindows(10), contents: sum })
  for (const [v, ts] of [
    ['x', 0],
    ['y', 30],
    ['z', 20], // [20, 30) touches [30, 40)
    ['w', 10], // [10, 20) touches [0, 10) and [20, 40): one session
    ['v', 60],
  ] as const) {
    p.element('k', v, ts)
    r.element('k', v.charCodeAt(0), ts)
  }
  p.end()
  r.end()
  t.same(p.out.map(fmt), ['k[0,40)=["w","x","y","z"]', 'k[60,70)=["v"]'])
  t.same(r.out.map(fmt), [`k[0,40)=${'wxyz'.split('').reduce((s, c) => s + c.charCodeAt(0), 0)}`, `k[60,70)=${'v'.charCodeAt(0)}`])
  t.equal(p.backend.keyCount(), 0)
})

t.test('process - sliding windows share each record, kept once and dropped when its last window is cleared', async (t) => {
  const h = new WindowHarness({ assigner: slidingEventTimeWindows(20, 10), contents: { kind: 'process', fn: (_k, _w, rs) => rs.join('') } })
  h.element('a', 'p', 5)
  h.element('a', 'q', 15)
  t.equal((h.backend.handle(h.logic.states.elements!) as { get(): unknown[] }).get().length, 2, 'one list entry per record')
  h.advanceWatermark(9)
  t.same(h.out.map(fmt), ['a[-10,10)="p"'])
  h.advanceWatermark(19)
  t.same(h.out.map(fmt), ['a[-10,10)="p"', 'a[0,20)="pq"'])
  t.equal((h.backend.handle(h.logic.states.elements!) as { get(): unknown[] }).get().length, 1, 'p is in no open window any more')
  h.end()
  t.same(h.out.map(fmt), ['a[-10,10)="p"', 'a[0,20)="pq"', 'a[10,30)="q"'])
  t.equal(h.backend.keyCount(), 0)
})

t.test('result - builds the emitted record', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum, result: (key, w, v) => `${String(key)}@${w.start}:${String(v)}` })
  h.element('a', 1, 0)
  h.end()
  t.same(h.out, ['a@0:1'])
})

t.test('processing time - windows fire by the clock; at the end of input the open ones fire', async (t) => {
  const h = new WindowHarness({ assigner: tumblingProcessingTimeWindows(100), contents: sum })
  h.now = 1050
  h.element('a', 1)
  h.element('b', 2)
  h.now = 1099
  h.element('a', 3)
  h.advanceClock(1098)
  t.same(h.out, [])
  h.advanceClock(1100)
  t.same(h.out.map(fmt), ['a[1000,1100)=4', 'b[1000,1100)=2'])
  h.element('a', 5)
  h.end()
  t.same(h.out.map(fmt), ['a[1000,1100)=4', 'b[1000,1100)=2', 'a[1100,1200)=5'])
  t.equal(h.backend.keyCount(), 0)
})

t.test('processing-time sessions - merge as the clock moves, fire after the gap', async (t) => {
  const h = new WindowHarness({ assigner: processingTimeSessionWindows(10), contents: sum })
  for (const now of [0, 5, 13]) {
    h.advanceClock(now)
    h.element('a', now)
  }
  h.advanceClock(21)
  t.same(h.out, [])
  h.advanceClock(22)
  t.same(h.out.map(fmt), ['a[0,23)=18'])
  t.same(h.pendingTimers('processing-time'), [], 'the merged-away sessions left no timer')
})

t.test('event-time windows without timestamps - a clear error', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum })
  t.throws(() => h.element('a', 1, undefined), { name: 'JobDefinitionError', message: /event-time windows need the time of every record: give the source watermarks/ })
})

t.test('times that are not whole milliseconds - a clear error, never a window at NaN', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum })
  for (const bad of [NaN, 1.5, Infinity, -Infinity, 2 ** 60]) {
    t.throws(() => h.element('a', 1, bad), { name: 'JobDefinitionError', message: /windows need whole-millisecond times, got .* for key "a" \(round it in the timestamp function/ }, String(bad))
  }
  t.equal(h.backend.keyCount(), 0, 'nothing stored')
  const p = new WindowHarness({ assigner: tumblingProcessingTimeWindows(10), contents: sum })
  p.now = NaN
  t.throws(() => p.element('a', 1), { message: /got NaN for key "a" from the clock/ })
})

t.test('user code returning a promise - AsyncUserCodeError', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: { kind: 'aggregate', aggregator: { createAccumulator: () => 0, add: () => Promise.resolve(1), getResult: (a) => a } } })
  t.throws(() => h.element('a', 1, 0), { name: 'AsyncUserCodeError' })
})

t.test('property - any arrival order within the allowed lateness gives the same final result per window', async (t) => {
  let seed = 7
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const records = Array.from({ length: 300 }, (_, i) => ({ key: `k${i % 7}`, value: (i * 37) % 101, ts: Math.floor(random() * 1000) }))
  const expected = new Map<string, number>()
  for (const r of records) {
    const start = Math.floor(r.ts / 100) * 100
    const id = `${r.key}[${start},${start + 100})`
    expected.set(id, (expected.get(id) ?? 0) + r.value)
  }
  for (const assigner of [tumblingEventTimeWindows(100)]) {
    for (let round = 0; round < 20; round++) {
      const order = [...records]
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[order[i], order[j]] = [order[j]!, order[i]!]
      }
      // the watermark trails the largest time seen by 300 ms; the lateness covers any disorder
      const h = new WindowHarness({ assigner, contents: sum, lateness: 1000, lateTag: late })
      let max = -Infinity
      for (const r of order) {
        h.element(r.key, r.value, r.ts)
        max = Math.max(max, r.ts)
        h.advanceWatermark(max - 300)
      }
      h.end()
      const last = new Map<string, number>()
      for (const o of h.out as Out[]) last.set(`${String(o.key)}[${o.window.start},${o.window.end})`, o.value as number)
      t.same([...last].sort(), [...expected].sort(), `round ${round}`)
      t.equal(h.side.get('late'), undefined)
    }
  }
})

t.test('definition - mistakes fail at once with JobDefinitionError, saying what to pass', async (t) => {
  const keyed = () => job('defs').source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  const tumbling = tumblingEventTimeWindows(1000)
  const add = { createAccumulator: () => 0, add: (a: number) => a + 1, getResult: (a: number) => a }
  const cases: [string, () => unknown, RegExp][] = [
    ['no assigner', () => keyed().window(undefined as never), /window needs a window assigner, e.g. tumblingEventTimeWindows\(60_000\)/],
    ['a number for an assigner', () => keyed().window(60_000 as never), /window needs a window assigner/],
    ['negative lateness', () => keyed().window(tumbling).allowedLateness(-1), /allowedLateness must be a whole number of milliseconds >= 0, got -1/],
    ['NaN lateness', () => keyed().window(tumbling).allowedLateness(NaN), /got NaN/],
    ['lateness on processing time', () => keyed().window(tumblingProcessingTimeWindows(10)).allowedLateness(5), /allowedLateness applies to event-time windows only/],
    ['late output on processing time', () => keyed().window(processingTimeSessionWindows(10)).lateOutput(late as never), /lateOutput applies to event-time windows only/],
    ['late output without a tag', () => keyed().window(tumbling).lateOutput('late' as never), /lateOutput needs an output tag/],
    ['reduce without a function', () => keyed().window(tumbling).reduce('w', undefined as never), /operator w: reduce needs a function \(a, b\) => reduced/],
    ['async reduce', () => keyed().window(tumbling).reduce('w', (async (a: unknown) => a) as never), /operator w: a window function is an async function/],
    ['aggregate without an aggregator', () => keyed().window(tumbling).aggregate('w', null as never), /aggregate needs an aggregator \{ createAccumulator, add, getResult, merge\? \}/],
    ['aggregator without getResult', () => keyed().window(tumbling).aggregate('w', { ...add, getResult: undefined } as never), /the aggregator needs getResult\(\)/],
    ['async add', () => keyed().window(tumbling).aggregate('w', { ...add, add: async (a: number) => a } as never), /async function/],
    ['session aggregate without merge', () => keyed().window(eventTimeSessionWindows(10)).aggregate('w', add), /session windows merge, so their aggregator needs merge\(a, b\)/],
    ['merge that is not a function', () => keyed().window(tumbling).aggregate('w', { ...add, merge: 1 } as never), /merge must be a function/],
    ['process without a function', () => keyed().window(tumbling).process('w', 'f' as never), /process needs a window function \(key, window, records\) => value/],
    ['result that is not a function', () => keyed().window(tumbling).reduce('w', (a) => a, { result: 1 as never }), /result must be a function \(key, window, value\) => record/],
    ['an unknown option', () => keyed().window(tumbling).reduce('w', (a) => a, { state: {} } as never), /unknown window option state \(known: parallelism, result\)/],
    ['options that are not an object', () => keyed().window(tumbling).reduce('w', (a) => a, null as never), /window options must be an object/],
  ]
  for (const [what, define, message] of cases) t.throws(define, { name: 'JobDefinitionError', message }, what)
})

t.test('tumbling - records out of order across a window end go to the right one of the open windows', async (t) => {
  const h = new WindowHarness({ assigner: tumblingEventTimeWindows(10), contents: sum })
  for (const [v, ts] of [
    [1, 12],
    [2, 5],
    [4, 15],
    [8, 3],
    [16, 25],
    [32, 9],
  ] as const) h.element('a', v, ts)
  t.same(h.pendingTimers('event-time'), [9, 19, 29])
  h.advanceWatermark(9)
  t.same(h.out.map(fmt), ['a[0,10)=42'])
  h.advanceWatermark(19)
  t.same(h.out.map(fmt), ['a[0,10)=42', 'a[10,20)=5'])
  h.end()
  t.same(h.out.map(fmt), ['a[0,10)=42', 'a[10,20)=5', 'a[20,30)=16'])
  t.equal(h.backend.keyCount(), 0)
})

t.test('session windows with allowed lateness - a late record bridging a fired session and a new one fires the merged session at once', async (t) => {
  const h = new WindowHarness({ assigner: eventTimeSessionWindows(10), contents: sum, lateness: 100, lateTag: late })
  h.element('a', 1, 0) // [0, 10)
  h.advanceWatermark(22)
  t.same(h.out.map(fmt), ['a[0,10)=1'])
  h.element('a', 2, 25) // [25, 35): not due yet
  h.element('a', 4, 12) // [12, 22) touches neither [0, 10) nor [25, 35); its end - 1 is behind the watermark
  t.same(h.out.map(fmt), ['a[0,10)=1', 'a[12,22)=4'], 'a new session already past its end fires at once')
  h.element('a', 8, 9) // [9, 19) bridges [0, 10) and [12, 22): [0, 22), due
  t.same(h.out.map(fmt), ['a[0,10)=1', 'a[12,22)=4', 'a[0,22)=13'])
  h.advanceWatermark(34)
  t.same(h.out.map(fmt).slice(3), ['a[25,35)=2'])
  h.advanceWatermark(121) // clean-up of [0, 22) at 21 + 100
  h.element('a', 100, 5)
  t.same(h.side.get('late'), [100], 'past the lateness: late')
  h.end()
  t.equal(h.backend.keyCount(), 0)
  t.same(h.pendingTimers('event-time'), [])
})
