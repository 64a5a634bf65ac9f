/**
 * The keyed count as a job file for `weir node` (bench/cluster.ts): a rescalable generator (one
 * split per slot) -> keyBy -> count. Sized by WEIR_BENCH_RECORDS, WEIR_BENCH_KEYS and
 * WEIR_BENCH_RATE (records per second per source instance; unset: as fast as it goes).
 */
import { generatorSource, job, valueState } from '../index.ts'

const count = valueState<number>('count', { default: 0 })
const rate = process.env.WEIR_BENCH_RATE

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
  .process('count', { state: { count } }, (_r, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + 1)
  }).job
