/**
 * Windows in real jobs: watermarks from the sources, timers, checkpoints and restores of the
 * runtime. The semantics in detail are in test/actors/window-operator.test.ts; the crash test
 * is test/windows-recovery.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  arraySink,
  boundedOutOfOrderness,
  EmbeddedStore,
  eventTimeSessionWindows,
  job,
  outputTag,
  readSnapshotState,
  runJob,
  slidingEventTimeWindows,
  tumblingEventTimeWindows,
  tumblingProcessingTimeWindows,
  type RunOptions,
  type WindowResult,
} from '../../index.ts'
import { events, listSource, shuffled, tumblingSums, type Event } from '../support/windows.ts'

function fixture(t: Test): EmbeddedStore {
  const dir = mkdtempSync(join(tmpdir(), 'weir-windows-'))
  const store = new EmbeddedStore({ dir: join(dir, 'snapshots') })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return store
}

function quiet(store: EmbeddedStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

const byTime = (maxOutOfOrdernessMs: number) => boundedOutOfOrderness<Event>({ timestamp: (e) => e.time, maxOutOfOrdernessMs })
const sumOf = { createAccumulator: () => 0, add: (sum: number, e: Event) => sum + e.value, getResult: (sum: number) => sum }

/** The results as `key@start` -> value; a window that fired more than once counts with its last value. */
function resultsById(out: readonly WindowResult<string, number>[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const r of out) m.set(`${r.key}@${r.window.start}`, r.value)
  return m
}

const sortedEntries = (m: Map<string, number>) => [...m].sort(([a], [b]) => a.localeCompare(b))

t.test('tumbling event time - out-of-order events with watermarks give exact totals, one result per key and window', async (t) => {
  const store = fixture(t)
  const evs = events({ records: 20_000, keys: 40, stepMs: 5, disorderMs: 400 })
  const out: WindowResult<string, number>[] = []
  const j = job('tumbling', { maxParallelism: 32 })
  j.source('in', listSource(evs), { parallelism: 2, watermarks: byTime(800) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(10_000))
    .aggregate('sums', sumOf, { parallelism: 3 })
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 20 } }))
  t.equal(result.status, 'finished')
  const expected = tumblingSums(evs, 10_000)
  t.equal(out.length, expected.size, 'exactly one result per key and window (no lateness, no late records)')
  t.same(sortedEntries(resultsById(out)), sortedEntries(expected))
  t.ok(result.checkpointsCompleted > 0)
  t.equal((await readSnapshotState(store, 'tumbling', 'sums', 'windows')).size, 0, 'every window fired and was cleared by the end')
})

t.test('property - shuffled arrival within the allowed lateness gives the same final results', async (t) => {
  const evs = events({ records: 3_000, keys: 7, stepMs: 10, disorderMs: 0 })
  const expected = sortedEntries(tumblingSums(evs, 1_000))
  for (const seed of [1, 2, 3]) {
    const store = fixture(t)
    const out: WindowResult<string, number>[] = []
    const late = outputTag<Event>('late')
    const lateOut: Event[] = []
    const windowed = job(`shuffled-${seed}`)
      .source('in', listSource(shuffled(evs, seed)), { watermarks: byTime(50) })
      .keyBy((e) => e.key)
      .window(tumblingEventTimeWindows(1_000))
      .allowedLateness(60_000)
      .lateOutput(late)
      .aggregate('sums', sumOf, { parallelism: 2 })
    windowed.sideOutput(late).sink('late', arraySink(lateOut))
    windowed.sink('out', arraySink(out))
    await runJob(windowed.job, quiet(store, { checkpoints: { intervalMs: 20 } }))
    // Windows fire again as late records come in; the last result of each is the whole window.
    t.same(sortedEntries(resultsById(out)), expected, `seed ${seed}: the last result of every window is its exact total`)
    t.ok(out.length > expected.length, `seed ${seed}: late records within the lateness fired windows again (${out.length} results)`)
    t.equal(lateOut.length, 0, 'nothing beyond the lateness')
  }
})

t.test('late data - records beyond the allowed lateness go to the side output, the windows stay exact', async (t) => {
  const store = fixture(t)
  const at = (key: string, time: number, value = 1): Event => ({ key, time, value })
  // The watermark trails the largest time by 0 ms; every record after `a@25000` is late for [0, 10000).
  const evs = [at('a', 1000), at('a', 2000), at('b', 3000), at('a', 25_000), at('a', 4000, 100), at('b', 9999, 100), at('a', 26_000)]
  const out: WindowResult<string, number>[] = []
  const lateOut: Event[] = []
  const late = outputTag<Event>('too-late')
  const windowed = job('late')
    .source('in', listSource(evs), { watermarks: byTime(0) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(10_000))
    .allowedLateness(5_000)
    .lateOutput(late)
    .aggregate('sums', sumOf)
  windowed.sideOutput(late).sink('late', arraySink(lateOut))
  windowed.sink('out', arraySink(out))
  await runJob(windowed.job, quiet(store, { tuning: { batchSize: 1 } }))
  t.same(sortedEntries(resultsById(out)), [
    ['a@0', 2],
    ['a@20000', 2],
    ['b@0', 1],
  ])
  t.same(lateOut.map((e) => `${e.key}@${e.time}`).sort(), ['a@4000', 'b@9999'])
})

t.test('sliding and session windows in a job - exact results', async (t) => {
  const store = fixture(t)
  const evs = events({ records: 5_000, keys: 5, stepMs: 10, disorderMs: 100 })
  const sliding: WindowResult<string, number>[] = []
  const sessions: { key: string; start: number; end: number; n: number }[] = []
  const j = job('sliding-sessions')
  const source = j.source('in', listSource(evs), { watermarks: byTime(200) })
  const keyed = source.keyBy((e) => e.key)
  keyed.window(slidingEventTimeWindows(2_000, 500)).reduce('sliding', (a, b) => ({ ...b, value: a.value + b.value }), { result: (key, w, v) => ({ key, window: w, value: v.value }) }).sink('s', arraySink(sliding))
  source
    .filter((e) => Math.floor(e.time / 7_000) % 2 === 0) // activity in bursts: sessions
    .keyBy((e) => e.key)
    .window(eventTimeSessionWindows(1_000))
    .process('sessions', (_key, _w, records) => records.length, { result: (key, w, n) => ({ key, start: w.start, end: w.end, n }) })
    .sink('p', arraySink(sessions))
  await runJob(j, quiet(store))
  // sliding: every window of 2 s starting every 500 ms
  const expectedSliding = new Map<string, number>()
  for (const e of evs) {
    for (let start = e.time - (e.time % 500); start > e.time - 2_000; start -= 500) {
      const id = `${e.key}@${start}`
      expectedSliding.set(id, (expectedSliding.get(id) ?? 0) + e.value)
    }
  }
  t.same(sortedEntries(resultsById(sliding)), sortedEntries(expectedSliding))
  // sessions: per key, sorted times; a session ends where the next time is more than the gap after the last
  const expectedSessions: string[] = []
  const kept = evs.filter((e) => Math.floor(e.time / 7_000) % 2 === 0)
  for (const key of new Set(kept.map((e) => e.key))) {
    const times = kept.filter((e) => e.key === key).map((e) => e.time).sort((a, b) => a - b)
    let start = times[0]!
    let end = start + 1_000
    let n = 0
    for (const time of times) {
      if (time > end) {
        expectedSessions.push(`${key}[${start},${end})=${n}`)
        start = time
        n = 0
      }
      end = Math.max(end, time + 1_000)
      n++
    }
    expectedSessions.push(`${key}[${start},${end})=${n}`)
  }
  t.same(sessions.map((s) => `${s.key}[${s.start},${s.end})=${s.n}`).sort(), expectedSessions.sort())
  t.ok(expectedSessions.length >= 10, `bursts give several sessions per key (${expectedSessions.length})`)
})

t.test('end of input and idle keys - every window fires: idle keys by the watermark others move, the rest at the final watermark', async (t) => {
  const store = fixture(t)
  const at = (key: string, time: number): Event => ({ key, time, value: 1 })
  const evs = [at('idle', 500), ...Array.from({ length: 100 }, (_, i) => at('busy', i * 100))]
  const out: WindowResult<string, number>[] = []
  const j = job('idle')
  j.source('in', listSource(evs), { watermarks: byTime(0) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(1_000))
    .aggregate('sums', sumOf)
    .sink('out', arraySink(out))
  await runJob(j, quiet(store, { tuning: { batchSize: 1 } }))
  t.same(out[0], { key: 'idle', window: { start: 0, end: 1_000 }, value: 1 }, 'the idle key fired as the watermark passed 999, before later windows')
  t.same(sortedEntries(resultsById(out)), sortedEntries(tumblingSums(evs, 1_000)), 'and the last window of the busy key at the end of input')
})

t.test('roll-up - hour totals summed into day totals by a second window operator', async (t) => {
  const store = fixture(t)
  const hour = 3_600_000
  const day = 24 * hour
  const evs = events({ records: 6_000, keys: 4, stepMs: 60_000, disorderMs: 30_000 }) // ~4 days of minutes
  const daily: WindowResult<string, number>[] = []
  const hourly: WindowResult<string, number>[] = []
  const j = job('rollup')
  const hours = j
    .source('in', listSource(evs), { parallelism: 2, watermarks: byTime(60_000) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(hour))
    .aggregate('hourly', sumOf, { parallelism: 2 })
  hours.sink('hours', arraySink(hourly))
  hours
    .keyBy((r) => r.key)
    .window(tumblingEventTimeWindows(day))
    .reduce('daily', (a, b) => ({ ...b, value: a.value + b.value }), { result: (key, w, r) => ({ key, window: w, value: r.value }) })
    .sink('days', arraySink(daily))
  await runJob(j, quiet(store, { checkpoints: { intervalMs: 20 } }))
  t.same(sortedEntries(resultsById(hourly)), sortedEntries(tumblingSums(evs, hour)))
  t.same(sortedEntries(resultsById(daily)), sortedEntries(tumblingSums(evs, day)), 'each day is the sum of its hours')
  t.equal(daily.length, tumblingSums(evs, day).size, 'one result per key and day: the hour results are on time downstream')
})

t.test('processing-time windows - fire by the clock; the ones open at the end of input fire then', async (t) => {
  const store = fixture(t)
  let now = 0
  const evs = Array.from({ length: 10 }, (_, i) => ({ key: 'a', time: 0, value: i + 1 }))
  const out: WindowResult<string, number>[] = []
  const j = job('processing-time')
  j.source('in', listSource(evs))
    .map((e) => {
      now += 100
      return e
    })
    .keyBy((e) => e.key)
    .window(tumblingProcessingTimeWindows(1_000))
    .aggregate('sums', sumOf)
    .sink('out', arraySink(out))
  await runJob(j, quiet(store, { clock: { now: () => now } }))
  t.equal(out.reduce((s, r) => s + r.value, 0), 55, 'every record is in a fired window')
  t.ok(out.every((r) => r.window.end - r.window.start === 1_000))
})

t.test('user code in windows - a throw (of anything) fails the job with UserCodeError naming the operator and key; a promise with AsyncUserCodeError', async (t) => {
  const evs = [{ key: 'a', time: 1, value: 1 }, { key: 'a', time: 2, value: 2 }]
  const store = fixture(t)
  const throwing = job('throws')
  throwing
    .source('in', listSource(evs), { watermarks: byTime(0) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(10))
    .reduce('w', () => {
      throw 'not an error'
    })
    .sink('out', arraySink([]))
  await t.rejects(runJob(throwing, quiet(store)), { name: 'JobFailedError', cause: { name: 'UserCodeError', operator: 'w', key: 'a', message: /operator w\[0\] key "a": user code threw: .*not an error/ } })
  const asyncJob = job('async-window')
  asyncJob
    .source('in', listSource(evs), { watermarks: byTime(0) })
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(10))
    .aggregate('w', { createAccumulator: () => 0, add: (a: number) => a, getResult: () => Promise.resolve(1) })
    .sink('out', arraySink([]))
  await t.rejects(runJob(asyncJob, quiet(store)), { name: 'AsyncUserCodeError', operator: 'w', key: 'a' }, 'terminal: not retried, not wrapped')
})

t.test('a snapshot taken before the job had windows - restores, and the new window operator starts empty', async (t) => {
  const store = fixture(t)
  const first = events({ records: 2_000, keys: 5, stepMs: 10, disorderMs: 0 })
  const define = (withWindows: boolean, out: WindowResult<string, number>[]) => {
    const j = job('grows')
    const keyed = j.source('in', listSource(first), { watermarks: byTime(0) }).keyBy((e) => e.key)
    keyed.process('pass', {}, () => {})
    if (withWindows) keyed.window(tumblingEventTimeWindows(1_000)).aggregate('sums', sumOf).sink('out', arraySink(out))
    return j
  }
  await runJob(define(false, []), quiet(store, { checkpoints: { intervalMs: 20 } }))
  const out: WindowResult<string, number>[] = []
  const result = await runJob(define(true, out), quiet(store, { restore: 'latest' }))
  t.equal(result.status, 'finished')
  t.same(out, [], 'the source resumed at its end: no records, no windows, no error')
})
