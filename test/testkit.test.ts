/**
 * The test kit (`weir/testing`): a hand-moved clock, and whole jobs run to their end with their
 * final keyed state read back.
 */
import t from 'tap'
import { arraySink, generatedRecord, generatorSource, job, JobDefinitionError, valueState, type Source } from '../index.ts'
import { ManualClock, testJob } from '../testkit/index.ts'

t.test('ManualClock - moves only forward, by hand', async (t) => {
  const clock = new ManualClock(100)
  t.equal(clock.now(), 100)
  clock.advance(50)
  t.equal(clock.now(), 150)
  clock.set(1_000)
  t.equal(clock.now(), 1_000)
  t.throws(() => clock.set(999), RangeError, 'no going back')
  t.throws(() => clock.advance(-1), RangeError)
  t.throws(() => clock.advance(Number.NaN), /finite number/)
  t.throws(() => new ManualClock(Infinity), /finite number/)
})

t.test('testJob - runs a job to its end and reads back the final keyed state of each operator', async (t) => {
  const count = valueState<number>('count', { default: 0 })
  const gen = { records: 2_000, keys: 25, seed: 2 }
  const out: unknown[] = []
  const counts = job('testkit-counts')
    .source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: 2 }, (r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    })
    .sink('out', arraySink(out))
  const run = await testJob(counts)
  t.equal(run.result.status, 'finished')
  const expected = new Map<string, number>()
  for (let seq = 0; seq < gen.records; seq++) {
    const { key } = generatedRecord(gen, seq)
    expected.set(key, (expected.get(key) ?? 0) + 1)
  }
  t.same([...run.state<number>('count', count)].sort(), [...expected].sort())
  t.same(run.state('count', 'count'), run.state('count', count), 'by descriptor or by name')
  t.throws(() => run.state('nope', count), /no keyed operator nope \(keyed operators: count\)/)
  t.throws(() => run.state('count', 'total'), /declares no state total \(it declares: count\)/)
})

t.test('testJob - a ManualClock drives processing-time timers and state TTL of a whole job', async (t) => {
  const clock = new ManualClock(0)
  const seen = valueState<number>('seen', { default: 0, ttl: { ttlMs: 1_000 } })
  const reminded = valueState<number>('reminded', { default: 0 })
  // Emits its records while the clock is before 5 s, then waits for the test's clock to pass 10 s before it ends.
  const records = ['a', 'b', 'a']
  const source: Source<string> = {
    kind: 'test',
    open() {
      let next = 0
      return {
        poll(emit) {
          if (next < records.length) {
            emit(records[next++]!)
            return 'more'
          }
          return clock.now() >= 10_000 ? 'end' : 'idle'
        },
        offset: () => next,
      }
    },
  }
  const out: string[] = []
  const reminders = job('testkit-clock')
    .source('in', source)
    .keyBy((k) => k)
    .process(
      'remind',
      {
        state: { seen, reminded },
        onTimer: (_time, ctx) => {
          // Two seconds later, the TTL of one second has forgotten the key's count.
          ctx.state(reminded).update(ctx.state(seen).value() === 0 ? 1 : -1)
          ctx.emit(String(ctx.key))
        },
      },
      (k, ctx) => {
        const s = ctx.state(seen)
        s.update(s.value() + 1)
        ctx.timers.registerProcessingTimeTimer(ctx.timers.currentProcessingTime() + 2_000)
      },
    )
    .sink('out', arraySink(out))
  const running = testJob(reminders, { clock, checkpoints: { intervalMs: 20 } })
  // Let the records through, then move time: the timers at 2 s fire, and the source may end at 10 s.
  await new Promise((r) => setTimeout(r, 300))
  t.same(out, [], 'no timer before the clock moves')
  clock.advance(2_000)
  await new Promise((r) => setTimeout(r, 300))
  clock.advance(8_000)
  const run = await running
  t.same(out.sort(), ['a', 'b'], 'one timer per key: registering the same time twice is one timer')
  t.same([...run.state('remind', reminded)].sort(), [['a', 1], ['b', 1]], 'TTL had forgotten each count when its timer fired')
  t.same([...run.state('remind', seen)], [], 'expired values are not in the final snapshot')
})

t.test('testJob - a broken job rejects with the error the job would fail with', async (t) => {
  await t.rejects(() => testJob(job('no-source')), JobDefinitionError)
})

t.test('operatorHarness - records, watermarks and processing time by hand; output, side output, state and pending timers', async (t) => {
  const { operatorHarness } = await import('../testkit/index.ts')
  const { arraySink: sink, outputTag, tumblingEventTimeWindows } = await import('../index.ts')
  const total = valueState<number>('total', { default: 0 })
  const big = outputTag<{ key: string; cents: number }>('big')
  const j = job('harnessed')
  const totals = j
    .source('in', generatorSource({ records: 1, keys: 1 }))
    .map((r) => ({ key: r.key, cents: r.value }))
    .keyBy((p) => p.key)
    .process(
      'totals',
      {
        state: { total },
        onTimer: (time, ctx) => ctx.emit({ key: ctx.key, total: ctx.state(total).value(), at: time, domain: ctx.timeDomain }),
      },
      (p, ctx) => {
        ctx.state(total).update(ctx.state(total).value() + p.cents)
        if (p.cents > 100) ctx.output(big, p)
        ctx.timers.registerEventTimeTimer(1_000)
        ctx.timers.registerProcessingTimeTimer(ctx.timers.currentProcessingTime() + 500)
      },
    )
  totals.sink('out', sink([]))
  totals.sideOutput(big).sink('big', sink([]))
  const h = operatorHarness(j, 'totals')
  h.process({ key: 'a', cents: 50 }, { timestamp: 10 })
  h.process({ key: 'a', cents: 150 }, { timestamp: 20 })
  h.process({ key: 'b', cents: 5 }, { timestamp: 30 })
  t.equal(h.state(total, 'a'), 200)
  t.equal(h.state(total, 'b'), 5)
  t.same(h.takeSideOutput(big), [{ record: { key: 'a', cents: 150 }, timestamp: 20 }])
  t.same(h.pendingTimers(), [
    { key: 'a', domain: 'processing-time', time: 500 },
    { key: 'b', domain: 'processing-time', time: 500 },
    { key: 'a', domain: 'event-time', time: 1_000 },
    { key: 'b', domain: 'event-time', time: 1_000 },
  ])
  h.watermark(999)
  t.same(h.takeOutput(), [], 'no event-time timer before its time')
  h.setProcessingTime(500)
  t.same(h.takeOutput().map((o) => o.record), [
    { key: 'a', total: 200, at: 500, domain: 'processing-time' },
    { key: 'b', total: 5, at: 500, domain: 'processing-time' },
  ])
  h.watermark(1_000)
  t.same(h.takeOutput(), [
    { record: { key: 'a', total: 200, at: 1_000, domain: 'event-time' }, timestamp: 1_000 },
    { record: { key: 'b', total: 5, at: 1_000, domain: 'event-time' }, timestamp: 1_000 },
  ])
  t.equal(h.currentWatermark(), 1_000)
  t.same(h.pendingTimers(), [])
  t.throws(() => operatorHarness(j, 'nope'), /no keyed operator nope \(keyed operators: totals\)/)

  // A window operator is a keyed operator too.
  const w = job('harnessed-windows')
  w.source('in', generatorSource({ records: 1, keys: 1 }))
    .keyBy((r) => r.key)
    .window(tumblingEventTimeWindows(100))
    .reduce('sums', (a, b) => ({ ...a, value: a.value + b.value }))
    .sink('out', sink([]))
  const hw = operatorHarness(w, 'sums')
  hw.process({ key: 'k', value: 1, seq: 0 }, { timestamp: 5 })
  hw.process({ key: 'k', value: 2, seq: 1 }, { timestamp: 50 })
  hw.process({ key: 'k', value: 4, seq: 2 }, { timestamp: 150 })
  t.equal(hw.pendingTimers().length, 2, 'one timer per open window')
  hw.endInput()
  t.same(hw.takeOutput().map((o) => (o.record as { value: { value: number } }).value.value), [3, 4], 'each window fires at the end of input')
})
