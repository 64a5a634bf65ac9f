/**
 * The keyed count as a job file for `weir node` (bench/cluster.ts): a rescalable generator (one
 * split per slot) -> keyBy -> count. Sized by WEIR_BENCH_RECORDS, WEIR_BENCH_KEYS and
 * WEIR_BENCH_RATE (records per second per source instance; unset: as fast as it goes).
 * WEIR_BENCH_WORK adds that many rounds of arithmetic per record to the count, to stand for an
 * operator with real work to do (bench/workers.ts).
 */
import { generatorSource, job, valueState } from '../index.ts'

const count = valueState<number>('count', { default: 0 })
const rate = process.env.WEIR_BENCH_RATE
const work = Number(process.env.WEIR_BENCH_WORK ?? 0)

/** Work that the JIT cannot drop: its result decides whether the count goes up by 1. */
function busy(seed: number): number {
  let h = seed | 0
  for (let i = 0; i < work; i++) h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) + i
  return h === 0.5 ? 0 : 1
}

export default job(process.env.WEIR_BENCH_JOB ?? 'bench-cluster', { maxParallelism: 128 })
  .source(
    'in',
    generatorSource({
      records: Number(process.env.WEIR_BENCH_RECORDS ?? 4_000_000),
      keys: Number(process.env.WEIR_BENCH_KEYS ?? 100_000),
      seed: 1,
      splits: 8,
      ...(rate === undefined ? {} : { ratePerSecond: Number(rate) }),
    }),
  )
  .keyBy((r) => r.key)
  .process('count', { state: { count } }, (r, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + (work === 0 ? 1 : busy(r.seq)))
  }).job
