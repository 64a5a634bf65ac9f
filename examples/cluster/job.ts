/**
 * Page views per page, to run on several nodes (README, "Running a job on several nodes").
 *
 * A replayable source produces 2 000 000 page views over 1 000 pages at 20 000 per second (about
 * 100 seconds, long enough to kill a node and add one back), keyed by page; `views` counts the
 * views of each page and keeps the sequence number of the last one. The final state is the same
 * whatever nodes came and went: every page's count is the number of its views in the input.
 *
 *   npx weir node examples/cluster/job.ts --store postgres://127.0.0.1:5432/test --node-id a --min-nodes 2
 *   npx weir node examples/cluster/job.ts --store postgres://127.0.0.1:5432/test --node-id b --min-nodes 2
 *
 * WEIR_EXAMPLE_RECORDS and WEIR_EXAMPLE_RATE change the size and pace (the example's test runs it fast).
 */
import { generatorSource, job, valueState } from 'weir'

const count = valueState<number>('count', { default: 0 })
const last = valueState<number>('last', { default: -1 })

export default job('page-views', { maxParallelism: 128 })
  .source(
    'input',
    generatorSource({
      records: Number(process.env.WEIR_EXAMPLE_RECORDS ?? 2_000_000),
      keys: 1000,
      seed: 42,
      ratePerSecond: Number(process.env.WEIR_EXAMPLE_RATE ?? 20_000),
    }),
  )
  .map((r) => ({ page: `/page/${r.key.slice(1)}`, seq: r.seq }))
  .keyBy((v) => v.page)
  .process('views', { state: { count, last } }, (v, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + 1)
    const l = ctx.state(last)
    // Each page's views arrive in order: a view older than the last one would be a repeat.
    if (v.seq <= l.value()) throw new Error(`page ${v.page}: view ${v.seq} after ${l.value()}`)
    l.update(v.seq)
  }).job
