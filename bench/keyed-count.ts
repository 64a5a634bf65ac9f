/**
 * Keyed count in local mode: source -> keyBy -> count, against a bare loop doing the same
 * counting (murmur3 + a Map per key group) in the same process, as the ceiling.
 *
 *   npm run bench                      # 100k and 1M keys, checkpoints off / on (Postgres, 1 s)
 *   WEIR_BENCH_PG_URL=postgres://... npm run bench
 *
 * Prints a Markdown table for BENCHMARKS.md. Not a test: nothing here asserts.
 */
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import pg from 'pg'
import { generatorSource, job, PostgresStore, startJob, valueState, EmbeddedStore } from '../index.ts'
import { KEY_HASH_SEED, murmur3String } from '../actors/state/key-groups.ts'
import { withFallbackUser } from '../persistence/postgres-store.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const PG_URL = process.env.WEIR_BENCH_PG_URL ?? 'postgres://127.0.0.1:5432/test'
const MAX_P = 128

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

/** The ceiling: the generator's records counted per key in a Map per key group, nothing else. */
function bareLoop(records: number, keys: number): number {
  const names: (string | undefined)[] = new Array<string | undefined>(keys)
  const groups = Array.from({ length: MAX_P }, () => new Map<string, number>())
  const seedHash = mix(1)
  const began = performance.now()
  for (let seq = 0; seq < records; seq++) {
    const h = mix(seq ^ seedHash)
    const i = h % keys
    const key = names[i] ?? (names[i] = `k${i}`)
    const r = { key, value: (mix(h) % 100) + 1, seq }
    const g = groups[murmur3String(r.key, KEY_HASH_SEED) % MAX_P]!
    g.set(r.key, (g.get(r.key) ?? 0) + 1)
  }
  return records / ((performance.now() - began) / 1000)
}

const count = valueState<number>('count', { default: 0 })

interface Run {
  perSecond: number
  /** Between 20% and 80% of the records: without start-up and the last checkpoint. */
  steadyPerSecond: number
  /** Process CPU time (all threads: GC helpers included) per record, in ns. */
  cpuNsPerRecord: number
  checkpoints: number
  maxSliceMs: number
  maxSyncMs: number
  maxEncodeMs: number
  loopDelayMaxMs: number
  gcMaxMs: number
  lastSize: number
}

async function weir(records: number, keys: number, store: 'off' | 'postgres' | 'embedded'): Promise<Run> {
  const j = job(`bench-${keys}-${store}`, { maxParallelism: MAX_P })
    .source('in', generatorSource({ records, keys }))
    .keyBy((r) => r.key)
    .process('count', { state: { count } }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    }).job
  const schema = `weir_bench_${process.pid}`
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-'))
  const s = store === 'postgres' ? new PostgresStore({ connectionString: PG_URL, schema }) : new EmbeddedStore({ dir })
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  // Garbage-collection pauses, to tell them apart from stalls the runtime itself causes.
  let gcMaxMs = 0
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMaxMs = Math.max(gcMaxMs, e.duration)
  })
  gc.observe({ entryTypes: ['gc'] })
  const began = performance.now()
  const cpu = process.cpuUsage()
  const handle = startJob(j, { store: s, checkpoints: store === 'off' ? false : { intervalMs: 1000 }, logLevel: 'warn', progressIntervalMs: 0 })
  // Sample progress to time the middle of the run, where only periodic checkpoints interfere.
  let at20: number | undefined
  let at80: number | undefined
  const sampler = setInterval(() => {
    const n = handle.recordsIn()['count'] ?? 0
    const now = performance.now()
    if (at20 === undefined && n >= records * 0.2) at20 = now
    if (at80 === undefined && n >= records * 0.8) at80 = now
  }, 5)
  const result = await handle.done
  const used = process.cpuUsage(cpu)
  clearInterval(sampler)
  const seconds = (performance.now() - began) / 1000
  delay.disable()
  gc.disconnect()
  await s.close()
  rmSync(dir, { recursive: true, force: true })
  if (store === 'postgres') {
    const c = new pg.Client({ connectionString: withFallbackUser(PG_URL) })
    await c.connect()
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await c.end()
  }
  return {
    perSecond: records / seconds,
    cpuNsPerRecord: ((used.user + used.system) * 1000) / records,
    steadyPerSecond: at20 !== undefined && at80 !== undefined && at80 > at20 ? (records * 0.6) / ((at80 - at20) / 1000) : NaN,
    checkpoints: result.checkpointsCompleted,
    maxSliceMs: result.metrics.maxSliceMs,
    maxSyncMs: result.metrics.maxSnapshotSyncMs,
    maxEncodeMs: result.metrics.maxEncodeSliceMs,
    loopDelayMaxMs: delay.max / 1e6,
    gcMaxMs,
    lastSize: result.lastCheckpoint?.sizeBytes ?? 0,
  }
}

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(0)}k`)
const ms = (n: number) => n.toFixed(1)

const cases = (process.env.WEIR_BENCH_CASES ?? '10000:10000000,100000:10000000,1000000:8000000').split(',').map((c) => c.split(':').map(Number) as [number, number])
const stores = (process.env.WEIR_BENCH_STORES ?? 'off,postgres').split(',') as ('off' | 'postgres' | 'embedded')[]
const repeat = Number(process.env.WEIR_BENCH_REPEAT ?? 3)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`node ${process.version}, ${process.platform}/${process.arch}; median of ${repeat} runs, interleaved; stalls are the worst run`)
console.log('| keys | records | run | records/s | steady records/s (20-80%) | vs bare loop (steady) | CPU ns/record | checkpoints | longest slice ms | sync snapshot ms | longest encode slice ms | event-loop delay max ms | longest GC pause ms | last checkpoint |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const [keys, records] of cases) {
  bareLoop(Math.min(records, 1_000_000), keys) // warm up
  const bare: number[] = []
  const runs = new Map<string, Run[]>(stores.map((s) => [s, []]))
  for (let i = 0; i < repeat; i++) {
    bare.push(bareLoop(records, keys))
    for (const store of stores) runs.get(store)!.push(await weir(records, keys, store))
  }
  const bareRate = median(bare)
  console.log(`| ${fmt(keys)} | ${fmt(records)} | bare loop | ${fmt(bareRate)} | ${fmt(bareRate)} | 1.00 | ${(1e9 / bareRate).toFixed(0)} | | | | | | | |`)
  const offRate = runs.has('off') ? median(runs.get('off')!.map((r) => r.perSecond)) : 0
  const offSteady = runs.has('off') ? median(runs.get('off')!.map((r) => r.steadyPerSecond)) : 0
  for (const store of stores) {
    const rs = runs.get(store)!
    const rate = median(rs.map((r) => r.perSecond))
    const steady = median(rs.map((r) => r.steadyPerSecond))
    const worst = (f: (r: Run) => number) => Math.max(...rs.map(f))
    const below = (off: number, on: number) => (store !== 'off' && off > 0 ? ` (${(((off - on) / off) * 100).toFixed(1)}% below off)` : '')
    console.log(
      `| ${fmt(keys)} | ${fmt(records)} | weir, checkpoints ${store === 'off' ? 'off' : `1 s ${store}`} | ${fmt(rate)}${below(offRate, rate)} | ${fmt(steady)}${below(offSteady, steady)} | ${(steady / bareRate).toFixed(2)} | ${median(rs.map((r) => r.cpuNsPerRecord)).toFixed(0)} | ${median(rs.map((r) => r.checkpoints))} | ${ms(worst((r) => r.maxSliceMs))} | ${ms(worst((r) => r.maxSyncMs))} | ${ms(worst((r) => r.maxEncodeMs))} | ${ms(worst((r) => r.loopDelayMaxMs))} | ${ms(worst((r) => r.gcMaxMs))} | ${(rs[0]!.lastSize / 1024 / 1024).toFixed(1)} MiB |`,
    )
  }
}
