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
