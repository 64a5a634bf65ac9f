/**
 * Checkpoint durations of the same job on the embedded store and on Postgres: a keyed count with
 * its source running flat out, a checkpoint every `WEIR_BENCH_INTERVAL_MS`, each store call timed
 * by a wrapper around the store.
 *
 *   npm run bench:stores
 *   WEIR_BENCH_CASES=100000:6000000 WEIR_BENCH_REPEAT=3 WEIR_BENCH_PG_URL=postgres://... npm run bench:stores
 *
 * A checkpoint's time runs from `beginSnapshot` to the end of `completeSnapshot`, so it includes
 * the barriers' trip through the job and every instance's write. Prints a Markdown table for
 * BENCHMARKS.md. Not a test: nothing here asserts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { EmbeddedStore, generatorSource, job, PostgresStore, startJob, valueState, type SnapshotStore } from '../index.ts'
import { withFallbackUser } from '../persistence/postgres-store.ts'

const PG_URL = process.env.WEIR_BENCH_PG_URL ?? 'postgres://127.0.0.1:5432/test'
const INTERVAL_MS = Number(process.env.WEIR_BENCH_INTERVAL_MS ?? 500)
const PARALLELISM = Number(process.env.WEIR_BENCH_PARALLELISM ?? 4)

/** Per checkpoint id: when begin was called, how long begin, the writes and complete took. */
interface Timing {
  beginAt: number
  beginMs: number
  writes: number[]
  completeMs?: number
  totalMs?: number
}

/** Times every call a checkpoint makes; everything else is passed through. */
function timed(store: SnapshotStore, timings: Map<number, Timing>): SnapshotStore {
  const wrapper: SnapshotStore = Object.create(store) as SnapshotStore
  const at = () => performance.now()
  return Object.assign(wrapper, {
    description: store.description,
    open: () => store.open(),
    close: () => store.close(),
    acquireLease: (...a: Parameters<SnapshotStore['acquireLease']>) => store.acquireLease(...a),
    nextSnapshotId: (j: string) => store.nextSnapshotId(j),
    getSnapshot: (j: string, id: number) => store.getSnapshot(j, id),
    listSnapshots: (j: string) => store.listSnapshots(j),
    latestCompleted: (j: string) => store.latestCompleted(j),
    readChunks: (...a: Parameters<SnapshotStore['readChunks']>) => store.readChunks(...a),
    abortSnapshot: (...a: Parameters<SnapshotStore['abortSnapshot']>) => store.abortSnapshot(...a),
    discardSnapshot: (j: string, id: number) => store.discardSnapshot(j, id),
    async beginSnapshot(b: Parameters<SnapshotStore['beginSnapshot']>[0]) {
      const t0 = at()
      await store.beginSnapshot(b)
      timings.set(b.id, { beginAt: t0, beginMs: at() - t0, writes: [] })
    },
    async writeChunks(j: string, id: number, chunks: Parameters<SnapshotStore['writeChunks']>[2]) {
      const t0 = at()
      const n = await store.writeChunks(j, id, chunks)
      timings.get(id)?.writes.push(at() - t0)
      return n
    },
    async completeSnapshot(j: string, id: number, c: Parameters<SnapshotStore['completeSnapshot']>[2]) {
      const t0 = at()
      const info = await store.completeSnapshot(j, id, c)
      const t = timings.get(id)
      if (t !== undefined) {
        t.completeMs = at() - t0
        t.totalMs = at() - t.beginAt
      }
      return info
    },
  })
}

const count = valueState<number>('count', { default: 0 })

async function run(records: number, keys: number, kind: 'embedded' | 'postgres'): Promise<Timing[]> {
  const j = job(`bench-stores-${keys}`, { maxParallelism: 128 })
    .source('in', generatorSource({ records, keys }))
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: PARALLELISM }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    }).job
  const schema = `weir_bench_stores_${process.pid}`
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-stores-'))
  const base = kind === 'postgres' ? new PostgresStore({ connectionString: PG_URL, schema }) : new EmbeddedStore({ dir })
  const timings = new Map<number, Timing>()
  const handle = startJob(j, { store: timed(base, timings), checkpoints: { intervalMs: INTERVAL_MS }, logLevel: 'warn', progressIntervalMs: 0 })
  await handle.done
  await base.close()
  rmSync(dir, { recursive: true, force: true })
  if (kind === 'postgres') {
    const c = new pg.Client({ connectionString: withFallbackUser(PG_URL) })
    await c.connect()
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await c.end()
  }
  // The final checkpoint runs after the source finished, with nothing competing: left out.
  const done = [...timings.values()].filter((t) => t.totalMs !== undefined)
  return done.slice(0, -1)
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const ms = (n: number) => (Number.isNaN(n) ? '-' : n.toFixed(0))
const fmt = (n: number) => (n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}k`)

const cases = (process.env.WEIR_BENCH_CASES ?? '10000:4000000,100000:4000000').split(',').map((c) => c.split(':').map(Number) as [number, number])
const repeat = Number(process.env.WEIR_BENCH_REPEAT ?? 2)
console.log(`node ${process.version}, ${process.platform}/${process.arch}; checkpoint every ${INTERVAL_MS} ms, keyed operator parallelism ${PARALLELISM}; ${repeat} runs per store, interleaved; the final checkpoint left out`)
console.log('| keys | records | store | checkpoints | median ms | p90 ms | max ms | median begin ms | median slowest write ms | median complete ms | median vs Postgres |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|')
for (const [keys, records] of cases) {
  const all = { embedded: [] as Timing[], postgres: [] as Timing[] }
  for (let i = 0; i < repeat; i++) {
    for (const kind of ['postgres', 'embedded'] as const) all[kind].push(...(await run(records, keys, kind)))
  }
  const pgMedian = quantile(all.postgres.map((t) => t.totalMs!), 0.5)
  for (const kind of ['embedded', 'postgres'] as const) {
    const ts = all[kind]
    const total = ts.map((t) => t.totalMs!)
    const median = quantile(total, 0.5)
    console.log(
      `| ${fmt(keys)} | ${fmt(records)} | ${kind} | ${ts.length} | ${ms(median)} | ${ms(quantile(total, 0.9))} | ${ms(Math.max(...total))} | ${ms(quantile(ts.map((t) => t.beginMs), 0.5))} | ${ms(quantile(ts.map((t) => Math.max(0, ...t.writes)), 0.5))} | ${ms(quantile(ts.map((t) => t.completeMs!), 0.5))} | ${(median / pgMedian).toFixed(2)} |`,
    )
  }
}
