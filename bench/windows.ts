/**
 * Event-time tumbling windows in local mode: generatorSource (event time = the record's `seq`
 * in ms, watermarks with no out-of-orderness) -> keyBy(key) -> 100 s tumbling windows summing
 * `value` (`aggregate`) -> a sink that counts the results, with checkpoints every second into an
 * embedded store. Run in the same process and interleaved with it, two bare loops that generate
 * the same records, keep the same sums and emit each window's sums when the watermark passes its
 * end: one keyed by key first (state per key group, as Weir must keep it to rescale), the
 * reference of the ratio, and one by window first, the fastest hand-written form.
 *
 *   node --import tsx bench/windows.ts
 *   WEIR_BENCH_CASES=10000:5000000 WEIR_BENCH_REPEAT=3 node --import tsx bench/windows.ts
 *
 * Prints a Markdown table for BENCHMARKS.md. Besides the timed runs, each of the three runs once
 * more keeping its window results, and the three must be equal (every key, window and sum): if
 * they differ, it says where and exits 1, since a faster run computing something else is no
 * comparison.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { KEY_HASH_SEED, murmur3String } from '../actors/state/key-groups.ts'
import { boundedOutOfOrderness, EmbeddedStore, generatedRecord, generatorSource, job, startJob, tumblingEventTimeWindows, type Sink } from '../index.ts'

const WINDOW_MS = 100_000

/** One window's result, as Weir's window operator emits it by default. */
interface Fired {
  key: string
  window: { start: number; end: number }
  value: number
}

/**
 * The same work without Weir, as a program that keeps state per key would do it: per key group
 * a Map of key -> (window end -> sum), and per window end the keys to emit when the watermark
 * (the time of the record in hand) passes it. Records come from the same generator.
 */
function bareLoop(records: number, keys: number, keep?: Fired[]): { perSecond: number; results: number } {
  const groups = Array.from({ length: 128 }, () => new Map<string, Map<number, number>>())
  const due = new Map<number, string[]>()
  let results = 0
  let nextFire = Infinity
  const emit = (key: string, end: number, value: number) => {
    const out = { key, window: { start: end - WINDOW_MS, end }, value }
    if (out.value > 0) results++
    keep?.push(out)
  }
  const fire = (upTo: number) => {
    for (const [end, ks] of due) {
      if (end - 1 > upTo) continue
      for (const key of ks) {
        const sums = groups[murmur3String(key, KEY_HASH_SEED) % 128]!.get(key)!
        emit(key, end, sums.get(end)!)
        sums.delete(end)
      }
      due.delete(end)
    }
    nextFire = Infinity
    for (const end of due.keys()) if (end < nextFire) nextFire = end
  }
  const began = performance.now()
  for (let seq = 0; seq < records; seq++) {
    const r = generatedRecord({ keys }, seq)
    const ts = r.seq
    const end = ts - (ts % WINDOW_MS) + WINDOW_MS
    const g = groups[murmur3String(r.key, KEY_HASH_SEED) % 128]!
    let sums = g.get(r.key)
    if (sums === undefined) g.set(r.key, (sums = new Map()))
    const sum = sums.get(end)
    if (sum === undefined) {
      let ks = due.get(end)
      if (ks === undefined) due.set(end, (ks = []))
      ks.push(r.key)
      if (end < nextFire) nextFire = end
    }
    sums.set(end, (sum ?? 0) + r.value)
    if (ts >= nextFire - 1) fire(ts)
  }
  fire(Infinity)
  return { perSecond: records / ((performance.now() - began) / 1000), results }
}

/** The fastest hand-written form, for reference: one Map per open window, key -> sum, dropped whole when it fires. */
function windowMajorLoop(records: number, keys: number, keep?: Fired[]): { perSecond: number; results: number } {
  const open = new Map<number, Map<string, number>>()
  let results = 0
  let nextFire = Infinity
  const fire = (upTo: number) => {
    for (const [end, sums] of open) {
      if (end - 1 > upTo) continue
      sums.forEach((value, key) => {
        const out = { key, window: { start: end - WINDOW_MS, end }, value }
        if (out.value > 0) results++
        keep?.push(out)
      })
      open.delete(end)
    }
    nextFire = Infinity
    for (const end of open.keys()) if (end < nextFire) nextFire = end
  }
  const began = performance.now()
  for (let seq = 0; seq < records; seq++) {
    const r = generatedRecord({ keys }, seq)
    const ts = r.seq
    const end = ts - (ts % WINDOW_MS) + WINDOW_MS
    let w = open.get(end)
    if (w === undefined) {
      open.set(end, (w = new Map()))
      if (end < nextFire) nextFire = end
    }
    w.set(r.key, (w.get(r.key) ?? 0) + r.value)
    if (ts >= nextFire - 1) fire(ts)
  }
  fire(Infinity)
  return { perSecond: records / ((performance.now() - began) / 1000), results }
}

function countingSink(count: { n: number }, keep?: Fired[]): Sink<Fired> {
  return {
    kind: 'count',
    open: () => ({
      write: (rs) => {
        count.n += rs.length
        if (keep !== undefined) for (const r of rs) keep.push({ key: r.key, window: { start: r.window.start, end: r.window.end }, value: r.value })
      },
    }),
  }
}

async function weir(records: number, keys: number, keep?: Fired[]): Promise<{ perSecond: number; results: number; checkpoints: number; maxSliceMs: number }> {
  const count = { n: 0 }
  const j = job(`bench-windows-${keys}`, { maxParallelism: 128 })
    .source('in', generatorSource({ records, keys }), { watermarks: boundedOutOfOrderness({ timestamp: (r) => r.seq, maxOutOfOrdernessMs: 0 }) })
    .keyBy((r) => r.key)
    .window(tumblingEventTimeWindows(WINDOW_MS))
    .aggregate('sums', { createAccumulator: () => 0, add: (sum: number, r) => sum + r.value, getResult: (sum) => sum })
    .sink('out', countingSink(count, keep))
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-windows-'))
  const store = new EmbeddedStore({ dir })
  const began = performance.now()
  const result = await startJob(j, { store, checkpoints: { intervalMs: 1000 }, logLevel: 'warn', progressIntervalMs: 0 }).done
  const seconds = (performance.now() - began) / 1000
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return { perSecond: records / seconds, results: count.n, checkpoints: result.checkpointsCompleted, maxSliceMs: result.metrics.maxSliceMs }
}

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(0)}k`)
const cases = (process.env.WEIR_BENCH_CASES ?? '10000:5000000').split(',').map((c) => c.split(':').map(Number) as [number, number])
const repeat = Number(process.env.WEIR_BENCH_REPEAT ?? 3)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The results in one order (by window end, then key): the runs emit them in different orders. */
const sorted = (rs: Fired[]) => [...rs].sort((a, b) => a.window.end - b.window.end || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))

/** Runs each side once more keeping its results, untimed; they must be deeply equal. */
async function sameResults(records: number, keys: number): Promise<boolean> {
  const kept = { perKey: [] as Fired[], perWindow: [] as Fired[], weir: [] as Fired[] }
  bareLoop(records, keys, kept.perKey)
  windowMajorLoop(records, keys, kept.perWindow)
  await weir(records, keys, kept.weir)
  const reference = sorted(kept.perKey)
  let same = true
  for (const [name, rs] of [['bare loop, per window', kept.perWindow], ['weir', kept.weir]] as const) {
    const other = sorted(rs)
    if (isDeepStrictEqual(other, reference)) continue
    same = false
    const at = other.findIndex((r, i) => !isDeepStrictEqual(r, reference[i]))
    const i = at === -1 ? Math.min(other.length, reference.length) : at
    console.error(`${fmt(keys)} keys, ${fmt(records)} records: ${name} gives other results than the bare loop per key (${other.length} vs ${reference.length}); first difference at ${i}: ${JSON.stringify(other[i])} vs ${JSON.stringify(reference[i])}`)
  }
  return same
}
console.log(`node ${process.version}, ${process.platform}/${process.arch}; ${WINDOW_MS / 1000} s tumbling event-time windows, event time = seq ms; median of ${repeat} interleaved runs`)
console.log('| keys | records | run | records/s | vs bare loop (per key) | ns/record (wall) | results | checkpoints | longest slice ms |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const [keys, records] of cases) {
  bareLoop(Math.min(records, 1_000_000), keys) // warm up
  windowMajorLoop(Math.min(records, 1_000_000), keys)
  const bare: { perSecond: number; results: number }[] = []
  const major: { perSecond: number; results: number }[] = []
  const runs: Awaited<ReturnType<typeof weir>>[] = []
  for (let i = 0; i < repeat; i++) {
    bare.push(bareLoop(records, keys))
    major.push(windowMajorLoop(records, keys))
    runs.push(await weir(records, keys))
  }
  const bareRate = median(bare.map((b) => b.perSecond))
  const majorRate = median(major.map((b) => b.perSecond))
  const rate = median(runs.map((r) => r.perSecond))
  console.log(`| ${fmt(keys)} | ${fmt(records)} | bare loop, per key | ${fmt(bareRate)} | 1.00 | ${(1e9 / bareRate).toFixed(0)} | ${bare[0]!.results} | | |`)
  console.log(`| ${fmt(keys)} | ${fmt(records)} | bare loop, per window | ${fmt(majorRate)} | ${(majorRate / bareRate).toFixed(2)} | ${(1e9 / majorRate).toFixed(0)} | ${major[0]!.results} | | |`)
  if (!(await sameResults(records, keys))) process.exitCode = 1
  console.log(
    `| ${fmt(keys)} | ${fmt(records)} | weir, checkpoints 1 s embedded | ${fmt(rate)} | ${(rate / bareRate).toFixed(2)} (${(rate / majorRate).toFixed(2)} of per window) | ${(1e9 / rate).toFixed(0)} | ${runs[0]!.results} | ${median(runs.map((r) => r.checkpoints))} | ${Math.max(...runs.map((r) => r.maxSliceMs)).toFixed(1)} |`,
  )
}
