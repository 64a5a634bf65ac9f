/**
 * Timers on keyed process operators: event time and processing time, deduplication, deletion,
 * snapshots and restores (with another parallelism), errors of onTimer.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  arraySink,
  AsyncUserCodeError,
  boundedOutOfOrderness,
  EmbeddedStore,
  generatorSource,
  job,
  JobDefinitionError,
  readSnapshotState,
  runJob,
  startJob,
  UserCodeError,
  valueState,
  type Clock,
  type RunOptions,
  type Source,
} from '../../index.ts'
import { TimerStore } from '../../actors/time/timers.ts'
import { failure } from '../support/expect.ts'

function fixture(t: Test): { store: EmbeddedStore } {
  const dir = mkdtempSync(join(tmpdir(), 'weir-timers-'))
  const store = new EmbeddedStore({ dir: join(dir, 'snapshots') })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { store }
}

function quiet(store: EmbeddedStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

/** A fake clock the test moves by hand. */
function fakeClock(start: number): Clock & { set(ms: number): void } {
  let now = start
  return { now: () => now, set: (ms) => (now = ms) }
}

interface Rec {
  key: string
  at: number
}

/**
 * A replayable source of `records`, which after the last one stays idle until `finished()` is
 * true, then ends: the job keeps running while a test checkpoints or moves its clock.
 */
function heldSource(records: Rec[], finished: () => boolean): Source<Rec> {
  return {
    kind: 'held',
    open(ctx) {
      let next = ctx.instance
      return {
        restore(offset) {
          next = offset as number
        },
        poll(emit, max) {
          for (let n = 0; n < max && next < records.length; n++, next += ctx.parallelism) emit(records[next]!)
          if (next < records.length) return 'more'
          return finished() ? 'end' : 'idle'
        },
        offset: () => next,
      }
    },
  }
}

async function until(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test('TimerStore: ordered, deduplicated per (key, domain, time), lazy deletion', async (t) => {
  const s = new TimerStore({ start: 0, end: 3 })
  s.register('event-time', 'a', 0, 30)
  s.register('event-time', 'a', 0, 10)
  s.register('event-time', 'a', 0, 10)
  s.register('event-time', 'b', 1, 20)
  s.register('processing-time', 'a', 0, 10)
  s.register('event-time', 'c', 2, 5)
  s.delete('event-time', 'c', 2, 5)
  t.equal(s.size, 4)
  t.equal(s.earliest('event-time'), 10)
  const fired: [string, number][] = []
  for (let e = s.pollDue('event-time', 25); e !== undefined; e = s.pollDue('event-time', 25)) fired.push([e.key as string, e.time])
  t.same(fired, [['a', 10], ['b', 20]])
  t.equal(s.size, 2)
  // Deleted, registered again: fires once.
  s.register('event-time', 'c', 2, 26)
  s.delete('event-time', 'c', 2, 26)
  s.register('event-time', 'c', 2, 26)
  const again: number[] = []
  for (let e = s.pollDue('event-time', Infinity); e !== undefined; e = s.pollDue('event-time', Infinity)) again.push(e.time)
  t.same(again, [26, 30])
  t.equal(s.pollDue('processing-time', 9), undefined)
  t.equal(s.pollDue('processing-time', 10)?.key, 'a')
})

t.test('TimerStore: 20k random timers with deletions come out in time order, each live one once', async (t) => {
  const s = new TimerStore({ start: 0, end: 0 })
  let x = 7
  const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % 5000)
  const live = new Set<string>()
  for (let i = 0; i < 20_000; i++) {
    const key = `k${rnd() % 300}`
    const time = rnd()
    s.register('event-time', key, 0, time)
    live.add(`${key}@${time}`)
    if (i % 7 === 0) {
      s.delete('event-time', key, 0, time)
      live.delete(`${key}@${time}`)
    }
  }
  t.equal(s.size, live.size)
  let last = -Infinity
  let ordered = true
  const seen = new Set<string>()
  for (let e = s.pollDue('event-time', 2500); e !== undefined; e = s.pollDue('event-time', 2500)) {
    if (e.time < last || e.time > 2500) ordered = false
    last = e.time
    seen.add(`${e.key as string}@${e.time}`)
  }
  for (let e = s.pollDue('event-time', Infinity); e !== undefined; e = s.pollDue('event-time', Infinity)) {
    if (e.time < last) ordered = false
    last = e.time
    seen.add(`${e.key as string}@${e.time}`)
  }
  t.ok(ordered, 'in time order, and only due ones in the first round')
  t.same([...seen].sort(), [...live].sort())
  t.equal(s.size, 0)
})

t.test('TimerStore: a snapshot keeps the timers as they were (copy-on-write) and restores per key group', async (t) => {
  const { keyGroupOf } = await import('../../index.ts')
  const maxP = 64
  const s = new TimerStore({ start: 0, end: maxP - 1 })
  const keys = Array.from({ length: 40 }, (_, i) => `k${i}`)
  for (const k of keys) s.register('event-time', k, keyGroupOf(k, maxP), 100)
  // A group that had timers once and is empty now must not take later timers into the snapshot.
  const used = new Set(keys.map((k) => keyGroupOf(k, maxP)))
  let late = 'late-0'
  for (let i = 1; used.has(keyGroupOf(late, maxP)); i++) late = `late-${i}`
  s.register('processing-time', late, keyGroupOf(late, maxP), 1)
  s.pollDue('processing-time', 1)
  const snap = s.startSnapshot()
  // Changes after the snapshot must not reach it.
  for (const k of keys) s.register('event-time', k, keyGroupOf(k, maxP), 200)
  s.register('processing-time', late, keyGroupOf(late, maxP), 2)
  s.pollDue('event-time', 100)
  while (!s.encodeSome(0.01));
  t.ok(snap.complete)
  const a = new TimerStore({ start: 0, end: 31 })
  const b = new TimerStore({ start: 32, end: 63 })
  for (const g of snap.groups) (g.keyGroup <= 31 ? a : b).restoreGroup(g.keyGroup, g.data, maxP)
  t.equal(a.size + b.size, 40, 'one timer per key, the ones registered later are not in it')
  t.equal(a.earliest('event-time'), 100)
  t.equal(a.earliest('processing-time') ?? b.earliest('processing-time'), undefined, 'no processing-time timer was in the snapshot')
  t.throws(() => a.restoreGroup(32, snap.groups[0]!.data, maxP), RangeError)
  const moved = snap.groups.find((g) => g.keyGroup !== 0)!
  t.throws(() => new TimerStore({ start: 0, end: 63 }).restoreGroup(0, moved.data, maxP), { name: 'MisplacedKeyError' }, 'a chunk under another key group is refused')
})

const fired = valueState<number>('fired', { default: 0 })

t.test('event-time timers all fire at the end of input, in time order per key, with key and state bound', async (t) => {
  const out: { key: string; time: number; n: number; ts: number | undefined }[] = []
  const g = job('et-end', { maxParallelism: 16 })
    .source('in', generatorSource({ records: 2000, keys: 20 }), {
      parallelism: 2,
      watermarks: boundedOutOfOrderness({ timestamp: (r) => r.seq, maxOutOfOrdernessMs: 0 }),
    })
    .keyBy((r) => r.key)
    .process(
      'timers',
      {
        parallelism: 3,
        state: { fired },
        onTimer: (time, ctx) => {
          const f = ctx.state(fired)
          f.update(f.value() + 1)
          ctx.emit({ key: ctx.key, time, n: f.value(), ts: ctx.timestamp })
          t.equal(ctx.timeDomain, 'event-time')
        },
      },
      (r, ctx) => {
        // One timer per key and 10_000-wide window: the watermark never reaches them before the end.
        ctx.timers.registerEventTimeTimer(1_000_000 + Math.floor(r.seq / 500))
        ctx.timers.registerEventTimeTimer(1_000_000 + Math.floor(r.seq / 500))
      },
    )
    .sink('out', arraySink(out))
  await runJob(g, { logLevel: 'silent', progressIntervalMs: 0 })
  // 20 keys x 4 windows, each key present in each window of 500 records.
  t.equal(out.length, 80)
  const perKey = new Map<string, number[]>()
  for (const o of out) perKey.set(o.key, [...(perKey.get(o.key) ?? []), o.time])
  for (const times of perKey.values()) t.same(times, [...times].sort((a, b) => a - b))
  t.ok(out.every((o) => o.ts === o.time))
})

t.test('event-time timers fire as the watermark passes them, not before', async (t) => {
  const out: { key: string; time: number; watermark: number }[] = []
  const g = job('et-wm')
    .source('in', generatorSource({ records: 1000, keys: 3 }), { watermarks: boundedOutOfOrderness({ timestamp: (r) => r.seq, maxOutOfOrdernessMs: 10 }) })
    .keyBy((r) => r.key)
    .process(
      'timers',
      { onTimer: (time, ctx) => ctx.emit({ key: ctx.key, time, watermark: ctx.timers.currentWatermark() }) },
      (r, ctx) => {
        if (r.seq % 100 === 0) ctx.timers.registerEventTimeTimer(r.seq + 50)
      },
    )
    .sink('out', arraySink(out))
  await runJob(g, { logLevel: 'silent', progressIntervalMs: 0, tuning: { batchSize: 7 } })
  t.equal(out.length, 10)
  for (const o of out) t.ok(o.watermark >= o.time, `timer ${o.time} fired at watermark ${o.watermark}`)
  t.ok(out.slice(0, -1).every((o) => o.watermark < Infinity), 'all but possibly the last fire before the end of input')
})

t.test('processing-time timers fire when the injected clock reaches them; pending ones are dropped at the end', async (t) => {
  const clock = fakeClock(1000)
  const out: { key: string; time: number; domain: string }[] = []
  let done = false
  const records: Rec[] = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 10}`, at: i }))
  const g = job('pt')
    .source('in', heldSource(records, () => done))
    .keyBy((r) => r.key)
    .process(
      'timers',
      { parallelism: 2, onTimer: (time, ctx) => ctx.emit({ key: ctx.key, time, domain: ctx.timeDomain }) },
      (r, ctx) => {
        t.equal(ctx.timers.currentProcessingTime(), 1000)
        ctx.timers.registerProcessingTimeTimer(2000 + Number(r.key.slice(1)))
        ctx.timers.registerProcessingTimeTimer(9000)
        if (r.key === 'k3') ctx.timers.deleteProcessingTimeTimer(2003)
      },
    )
    .sink('out', arraySink(out))
  const handle = startJob(g, { logLevel: 'silent', progressIntervalMs: 0, clock })
  await until(() => handle.recordsIn()['timers'] === 30)
  await new Promise((r) => setTimeout(r, 50))
  t.equal(out.length, 0, 'nothing fires before the clock moves')
  clock.set(2005)
  await until(() => out.length === 5)
  clock.set(2010)
  await until(() => out.length === 9)
  t.same(out.map((o) => o.key).sort(), ['k0', 'k1', 'k2', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9'])
  t.ok(out.every((o) => o.domain === 'processing-time'))
  done = true
  await handle.done
  t.equal(out.length, 9, 'the timers at 9000 were pending at the end of input: dropped')
})

t.test('timers survive a snapshot and restore with another parallelism; an overdue processing-time timer fires at once', async (t) => {
  const { store } = fixture(t)
  const clock = fakeClock(0)
  const records: Rec[] = Array.from({ length: 200 }, (_, i) => ({ key: `k${i % 50}`, at: i }))
  const build = (parallelism: number, out: unknown[], finished: () => boolean) =>
    job('restore-timers', { maxParallelism: 32 })
      .source('in', heldSource(records, finished))
      .keyBy((r) => r.key)
      .process(
        'timers',
        {
          parallelism,
          state: { fired },
          onTimer: (time, ctx) => {
            const f = ctx.state(fired)
            f.update(f.value() + 1)
            ctx.emit({ key: ctx.key, time, domain: ctx.timeDomain })
          },
        },
        (r, ctx) => {
          ctx.timers.registerProcessingTimeTimer(1000 + Number(r.key.slice(1)))
          ctx.timers.registerEventTimeTimer(5000)
        },
      )
      .sink('out', arraySink(out))
  const first: unknown[] = []
  const h1 = startJob(build(2, first, () => false), quiet(store, { clock, checkpoints: { intervalMs: 20 } }))
  await until(() => h1.recordsIn()['timers'] === 200)
  // Two more checkpoints: the newest surely covers every record.
  const seen = (await store.latestCompleted('restore-timers'))?.id ?? 0
  await until(async () => ((await store.latestCompleted('restore-timers'))?.id ?? 0) > seen + 1)
  await h1.cancel()
  await h1.done
  t.equal(first.length, 0)

  // Restored with 3 instances, the clock past every processing-time timer.
  clock.set(10_000)
  const second: { key: string; time: number; domain: string }[] = []
  let finished = false
  const h2 = startJob(build(3, second, () => finished), quiet(store, { clock, restore: 'latest', checkpoints: { intervalMs: 20 } }))
  await until(() => second.length === 50)
  t.ok(second.every((o) => o.domain === 'processing-time' && o.time === 1000 + Number(o.key.slice(1))), 'each key fires its overdue timer once')
  finished = true
  const result = await h2.done
  t.equal(result.status, 'finished')
  t.equal(second.length, 100, 'then, at the end of input, each key its event-time timer')
  t.equal(new Set(second.map((o) => `${o.key}/${o.domain}`)).size, 100)
  const state = await readSnapshotState(store, 'restore-timers', 'timers', 'fired')
  t.equal(state.size, 50)
  t.ok([...state.values()].every((v) => v === 2))
})

t.test('restore of a snapshot taken before the operator had timers: none, and no error', async (t) => {
  const { store } = fixture(t)
  const g1 = job('add-timers')
    .source('in', generatorSource({ records: 100, keys: 5 }))
    .keyBy((r) => r.key)
    .process('p', { state: { fired } }, () => {})
    .sink('out', arraySink([]))
  await runJob(g1, quiet(store, { checkpoints: { intervalMs: 1000 } }))
  const out: number[] = []
  const g2 = job('add-timers')
    .source('in', generatorSource({ records: 100, keys: 5 }))
    .keyBy((r) => r.key)
    .process('p', { state: { fired }, onTimer: (time, ctx) => ctx.emit(time) }, () => {})
    .sink('out', arraySink(out))
  const r = await runJob(g2, quiet(store, { restore: 'latest', checkpoints: { intervalMs: 1000 } }))
  t.equal(r.status, 'finished')
  t.same(out, [])
})

t.test('mistakes: async onTimer, timers without onTimer, bad times, throwing and promise-returning onTimer', async (t) => {
  const src = () => job('bad').source('in', generatorSource({ records: 10, keys: 2 })).keyBy((r) => r.key)
  t.throws(() => src().process('p', { onTimer: async () => {} }, () => {}), JobDefinitionError)
  t.throws(() => src().process('p', { onTimer: 5 as never }, () => {}), JobDefinitionError)
  t.throws(() => src().process('p', { lateRecords: 'keep' as never }, () => {}), JobDefinitionError)
  t.throws(() => job('b').source('in', generatorSource({ records: 1, keys: 1 }), { watermarks: {} as never }), JobDefinitionError)
  t.throws(() => boundedOutOfOrderness({ timestamp: () => 1, maxOutOfOrdernessMs: NaN }), JobDefinitionError)
  t.throws(() => boundedOutOfOrderness({ timestamp: () => 1, maxOutOfOrdernessMs: 1, idleTimeoutMs: 0 }), JobDefinitionError)
  t.throws(() => boundedOutOfOrderness({ timestamp: async () => 1, maxOutOfOrdernessMs: 1 } as never), JobDefinitionError)

  const noTimer = await failure(runJob(src().process('p', {}, (_r, ctx) => ctx.timers.registerEventTimeTimer(1)).sink('o', arraySink([])), { logLevel: 'silent', restart: { type: 'none' } }))
  t.match(String((noTimer as Error).message), /onTimer/)
  for (const bad of [NaN, '5', -Infinity]) {
    const e = await failure(
      runJob(src().process('p', { onTimer: () => {} }, (_r, ctx) => ctx.timers.registerEventTimeTimer(bad as number)).sink('o', arraySink([])), { logLevel: 'silent', restart: { type: 'none' } }),
    )
    t.ok(e instanceof UserCodeError || (e as Error).cause instanceof UserCodeError, `time ${String(bad)} is refused`)
  }
  const noRun = job('c').source('in', generatorSource({ records: 1, keys: 1 })).sink('o', arraySink([]))
  t.throws(() => startJob(noRun, { clock: { now: () => 'x' } as never }), /clock/)
  t.throws(() => startJob(noRun, { clock: { now: 5 } as never }), /clock/)

  const throwing = await failure(
    runJob(src().process('p', { onTimer: () => { throw 'boom' } }, (_r, ctx) => ctx.timers.registerEventTimeTimer(5)).sink('o', arraySink([])), { logLevel: 'silent', restart: { type: 'none' } }),
  )
  t.match(String((throwing as Error).message), /boom/)
  const promising = await failure(
    runJob(src().process('p', { onTimer: () => Promise.resolve() as never }, (_r, ctx) => ctx.timers.registerEventTimeTimer(5)).sink('o', arraySink([])), { logLevel: 'silent', restart: { type: 'none' } }),
  )
  const cause = promising instanceof AsyncUserCodeError ? promising : (promising as Error).cause
  t.ok(cause instanceof AsyncUserCodeError, 'a promise from onTimer is AsyncUserCodeError')
})
