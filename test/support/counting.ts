/**
 * The counting job the exactly-once tests run (in-process and as a child process), and the
 * state it must end with, computed straight from the generator's sequence.
 */
import type { Checks } from './controls.ts'
import type { TestStore } from './stores.ts'
import { readSnapshotState, generatedRecord, generatorSource, job, listState, mapState, reducingState, valueState, type GeneratorOptions, type ProcessContext } from '../../index.ts'

export const sum = valueState<number>('sum', { default: 0 })
export const count = reducingState<number>('count', (a, b) => a + b)
export const lastSeqs = listState<number>('last-seqs')
export const buckets = mapState<number, number>('buckets')

/** Applies one record to the four states, the same way the expected state is computed. */
export function countRecord(r: { value: number; seq: number }, ctx: ProcessContext<string, unknown>): void {
  const s = ctx.state(sum)
  s.update(s.value() + r.value)
  ctx.state(count).add(1)
  const seqs = ctx.state(lastSeqs)
  seqs.add(r.seq)
  if (seqs.get().length > 5) seqs.update(seqs.get().slice(-5))
  const b = ctx.state(buckets)
  b.put(r.value % 10, (b.get(r.value % 10) ?? 0) + 1)
}

export interface CountingJobOptions extends GeneratorOptions {
  name: string
  parallelism?: number
  /** Called before each record is counted, e.g. to throw. */
  before?: (seq: number) => void
}

export function countingJob(o: CountingJobOptions) {
  const { name, parallelism = 2, before, ...gen } = o
  return job(name, { maxParallelism: 64 })
    .source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process('count', { state: { sum, count, lastSeqs, buckets }, parallelism }, (r, ctx) => {
      before?.(r.seq)
      countRecord(r, ctx)
    }).job
}

export interface ExpectedState {
  sum: Map<string, number>
  count: Map<string, number>
  'last-seqs': Map<string, number[]>
  buckets: Map<string, Map<number, number>>
}

export function expectedState(o: Pick<GeneratorOptions, 'records' | 'keys' | 'seed'>): ExpectedState {
  const e: ExpectedState = { sum: new Map(), count: new Map(), 'last-seqs': new Map(), buckets: new Map() }
  for (let seq = 0; seq < o.records; seq++) {
    const r = generatedRecord(o, seq)
    e.sum.set(r.key, (e.sum.get(r.key) ?? 0) + r.value)
    e.count.set(r.key, (e.count.get(r.key) ?? 0) + 1)
    e['last-seqs'].set(r.key, [...(e['last-seqs'].get(r.key) ?? []), r.seq].slice(-5))
    const b = e.buckets.get(r.key) ?? new Map<number, number>()
    b.set(r.value % 10, (b.get(r.value % 10) ?? 0) + 1)
    e.buckets.set(r.key, b)
  }
  return e
}

/** Asserts that the counting job's last completed snapshot (or snapshot `snapshotId`) holds exactly the expected state. */
export async function assertFinalState(t: Checks, ts: TestStore, job: string, expected: ExpectedState, snapshotId?: number): Promise<void> {
  const where = snapshotId === undefined ? '' : ` in snapshot ${snapshotId}`
  for (const name of ['sum', 'count', 'last-seqs', 'buckets'] as const) {
    const got = await readSnapshotState(ts.store, job, 'count', name, snapshotId)
    const want = expected[name] as Map<string, unknown>
    t.equal(got.size, want.size, `${name}: one entry per key${where}`)
    let wrong = 0
    for (const [k, v] of want) if (JSON.stringify(got.get(k), mapReplacer) !== JSON.stringify(v, mapReplacer)) wrong++
    t.equal(wrong, 0, `${name}: every key holds exactly the expected value${where}`)
  }
}

function mapReplacer(_k: string, v: unknown): unknown {
  return v instanceof Map ? [...v.entries()].sort((a, b) => Number(a[0]) - Number(b[0])) : v
}

