/**
 * Event time: watermarks from sources, the minimum over input channels, idleness, late records,
 * timestamps on emitted records, and side outputs.
 */
import t from 'tap'
import {
  arraySink,
  boundedOutOfOrderness,
  generatorSource,
  job,
  JobDefinitionError,
  outputTag,
  runJob,
  startJob,
  type Clock,
  type Source,
} from '../../index.ts'
import { WatermarkTracker } from '../../actors/time/watermarks.ts'

interface Ev {
  key: string
  at: number
}

/** Emits one record per poll (so a watermark follows each), then idles until `finished()`, then ends. */
function oneByOne(records: Ev[], finished: () => boolean = () => true): Source<Ev> {
  return {
    kind: 'one-by-one',
    open() {
      let next = 0
      return {
        restore(offset) {
          next = offset as number
        },
        poll(emit) {
          if (next < records.length) {
            emit(records[next++]!)
            return 'more'
          }
          return finished() ? 'end' : 'idle'
        },
        offset: () => next,
      }
    },
  }
}

const at = (key: string, ...times: number[]): Ev[] => times.map((t) => ({ key, at: t }))
const wm = <T extends { at: number }>(idleTimeoutMs?: number) =>
  boundedOutOfOrderness<T>({ timestamp: (r) => r.at, maxOutOfOrdernessMs: 0, ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }) })

async function until(check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test('WatermarkTracker: minimum over non-idle channels, monotonic, ended channels do not hold it back', async (t) => {
  const w = new WatermarkTracker(2)
  t.equal(w.onWatermark(0, 10, false), undefined, 'channel 1 has sent none yet')
  t.equal(w.onWatermark(1, 5, false), 5)
  t.equal(w.onWatermark(1, 20, false), 10)
  t.equal(w.onWatermark(0, 8, false), undefined, 'a channel going back does not move it back')
  t.equal(w.onWatermark(1, 30, true), undefined, 'an idle channel is left out; channel 0 is still at 10')
  t.equal(w.onWatermark(0, 15, false), 15, 'only channel 0 counts while channel 1 is idle')
  w.onActive(1)
  t.equal(w.onWatermark(0, 40, false), 30, 'active again: channel 1 counts')
  t.equal(w.current, 30)
  t.equal(w.onEnd(1), 40)
  t.equal(w.onEnd(0), Infinity)

  const v = new WatermarkTracker(2)
  v.onWatermark(0, 5, false)
  t.equal(v.onWatermark(1, 7, true), 5)
  t.notOk(v.allIdle)
  t.equal(v.onEnd(0), undefined, 'one input ended, the other idle: no jump to +Infinity')
  t.ok(v.allIdle, 'every open input is idle')
  t.equal(v.current, 5)
  t.equal(v.onEnd(1), Infinity)

  const m = new WatermarkTracker(2)
  m.ignore(1)
  t.equal(m.onWatermark(0, 3, false), 3, 'a message channel never holds the watermark back')
  t.equal(m.onWatermark(0, 9, true), undefined, 'nor lifts it to +Infinity while the only data input is idle')
  t.ok(m.allIdle)
})

t.test('an operator watermark is the minimum over its inputs; an idle input stops holding it back', async (t) => {
  let clockNow = 0
  const clock: Clock = { now: () => clockNow }
  let finished = false
  const out: { time: number; watermark: number }[] = []
  const b = job('two-inputs')
  const fast = b.source('fast', oneByOne(at('a', ...Array.from({ length: 100 }, (_, i) => i)), () => finished), { watermarks: wm<Ev>() })
  const slow = b.source('slow', oneByOne(at('a', ...Array.from({ length: 10 }, (_, i) => i)), () => finished), { watermarks: wm<Ev>(1000) })
  fast
    .union(slow)
    .keyBy((r) => r.key)
    .process(
      'p',
      { onTimer: (time, ctx) => ctx.emit({ time, watermark: ctx.timers.currentWatermark() }) },
      (r, ctx) => {
        if (r.at === 0) ctx.timers.registerEventTimeTimer(50)
      },
    )
    .sink('out', arraySink(out))
  const h = startJob(b, { logLevel: 'silent', progressIntervalMs: 0, clock })
  await until(() => h.recordsIn()['p'] === 110)
  await new Promise((r) => setTimeout(r, 50))
  t.same(out, [], 'the slow input holds the watermark at 8')
  clockNow = 5000
  await until(() => out.length === 1)
  t.same(out, [{ time: 50, watermark: 98 }], 'idle: the fast input alone sets the watermark (99 - 0 - 1)')
  finished = true
  await h.done
})

t.test('without idleness, event-time timers wait for the end of input (+Infinity)', async (t) => {
  const out: { time: number; watermark: number }[] = []
  const b = job('no-idle')
  b.source('fast', oneByOne(at('a', 0, 100, 200)), { watermarks: wm<Ev>() })
    .union(b.source('slow', oneByOne(at('a', 0)), { watermarks: wm<Ev>() }))
    .keyBy((r) => r.key)
    .process('p', { onTimer: (time, ctx) => ctx.emit({ time, watermark: ctx.timers.currentWatermark() }) }, (r, ctx) => ctx.timers.registerEventTimeTimer(r.at + 1))
    .sink('out', arraySink(out))
  await runJob(b, { logLevel: 'silent', progressIntervalMs: 0 })
  t.same(out.map((o) => o.time), [1, 101, 201])
})

const sequence = at('k', 10, 20, 30, 5, 40, 25)

async function lateRun(lateRecords: 'process' | 'drop' | ReturnType<typeof outputTag<Ev>> | undefined): Promise<{ main: { at: number; ts: number | undefined }[]; late: Ev[] }> {
  const main: { at: number; ts: number | undefined }[] = []
  const late: Ev[] = []
  const s = job('late')
    .source('in', oneByOne(sequence), { watermarks: wm<Ev>() })
    .keyBy((r) => r.key)
    .process('p', lateRecords === undefined ? {} : { lateRecords }, (r, ctx) => ctx.emit({ at: r.at, ts: ctx.timestamp }))
  s.sink('out', arraySink(main))
  if (typeof lateRecords === 'object') s.sideOutput(lateRecords).sink('late', arraySink(late))
  await runJob(s.job, { logLevel: 'silent', progressIntervalMs: 0 })
  return { main, late }
}

t.test('late records (timestamp <= watermark): processed by default, dropped, or sent to a side output', async (t) => {
  const all = await lateRun(undefined)
  t.same(all.main.map((r) => r.at), [10, 20, 30, 5, 40, 25], 'default: processed like Flink')
  t.ok(all.main.every((r) => r.ts === r.at), 'ctx.timestamp is the record timestamp')
  t.same((await lateRun('process')).main.map((r) => r.at), [10, 20, 30, 5, 40, 25])
  t.same((await lateRun('drop')).main.map((r) => r.at), [10, 20, 30, 40])
  const tag = outputTag<Ev>('late-events')
  const tagged = await lateRun(tag)
  t.same(tagged.main.map((r) => r.at), [10, 20, 30, 40])
  t.same(tagged.late.map((r) => r.at), [5, 25])
})

t.test('records carry timestamps downstream: emitted ones the input record, event-time timers the timer time', async (t) => {
  const out: { what: string; ts: number | undefined }[] = []
  const b = job('stamps')
  b.source('in', oneByOne(at('k', 1, 2, 3)), { watermarks: wm<Ev>() })
    .keyBy((r) => r.key)
    .process<{ key: string; at: number; timer?: number }>('first', { onTimer: (time, ctx) => ctx.emit({ key: 'k', at: -1, timer: time }) }, (r, ctx) => {
      ctx.emit({ key: 'k', at: r.at })
      if (r.at === 1) ctx.timers.registerEventTimeTimer(500)
    })
    .map((r) => r)
    .keyBy((r) => r.key)
    .process('second', {}, (r, ctx) => ctx.emit({ what: r.at === -1 ? 'timer' : `record ${r.at}`, ts: ctx.timestamp }))
    .sink('out', arraySink(out))
  await runJob(b, { logLevel: 'silent', progressIntervalMs: 0 })
  t.same(out, [
    { what: 'record 1', ts: 1 },
    { what: 'record 2', ts: 2 },
    { what: 'record 3', ts: 3 },
    { what: 'timer', ts: 500 },
  ])
})

t.test('a union of a stream with event time and one without: records of the second carry none onward', async (t) => {
  const out: { at: number; ts: number | undefined }[] = []
  const b = job('mixed')
  b.source('timed', oneByOne(at('k', 7)), { watermarks: wm<Ev>() })
    .union(b.source('plain', oneByOne(at('k', -5))))
    .keyBy((r) => r.key)
    .process<Ev>('first', {}, (r, ctx) => ctx.emit(r))
    .keyBy((r) => r.key)
    .process('second', {}, (r, ctx) => ctx.emit({ at: r.at, ts: ctx.timestamp }))
    .sink('out', arraySink(out))
  await runJob(b, { logLevel: 'silent', progressIntervalMs: 0 })
  t.same(out.sort((x, y) => x.at - y.at), [{ at: -5, ts: undefined }, { at: 7, ts: 7 }])
})

t.test('side outputs go to their own sink; a tag nobody reads is emitted nowhere', async (t) => {
  const odd = outputTag<number>('odd')
  const unread = outputTag<string>('unread')
  const evens: number[] = []
  const odds: number[] = []
  const s = job('sides')
    .source('in', generatorSource({ records: 100, keys: 3 }))
    .keyBy((r) => r.key)
    .process('split', { parallelism: 2 }, (r, ctx) => {
      if (r.seq % 2 === 0) ctx.emit(r.seq)
      else ctx.output(odd, r.seq)
      ctx.output(unread, 'x')
    })
  s.sink('evens', arraySink(evens))
  s.sideOutput(odd).map((n) => n * 10).sink('odds', arraySink(odds), { parallelism: 1 })
  await runJob(s.job, { logLevel: 'silent', progressIntervalMs: 0 })
  t.same(evens.sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => 2 * i))
  t.same(odds.sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => (2 * i + 1) * 10))
})

t.test('side output mistakes are JobDefinitionErrors', async (t) => {
  const s = job('side-bad')
    .source('in', generatorSource({ records: 1, keys: 1 }))
    .keyBy((r) => r.key)
    .process('p', {}, () => {})
  s.sideOutput(outputTag<number>('x'))
  t.throws(() => s.sideOutput(outputTag<number>('x')), JobDefinitionError, 'two different tags with one id')
  t.throws(() => s.map((r) => r).sideOutput(outputTag('y')), JobDefinitionError, 'not on a mapped stream')
  t.throws(() => job('j').source('in', generatorSource({ records: 1, keys: 1 })).sideOutput(outputTag('z')), JobDefinitionError, 'not on a source')
  t.throws(() => s.sideOutput({ id: 'x' } as never), JobDefinitionError)
  t.throws(() => outputTag(''), JobDefinitionError)
})
