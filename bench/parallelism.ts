/**
 * Keyed count in local mode (one thread) at source and keyed parallelism 1 and 2, interleaved,
 * checkpoints off: what running more instances on one thread costs.
 *
 *   node --import tsx bench/parallelism.ts [records] [keys] [rounds]
 *
 * Prints the records/s of each round and the median, as a ratio of source 1 / keyed 1. Not a
 * test: nothing here asserts.
 */
import { generatorSource, job, startJob, valueState } from '../index.ts'

const records = Number(process.argv[2] ?? 3_000_000)
const keys = Number(process.argv[3] ?? 100_000)
const rounds = Number(process.argv[4] ?? 5)
const count = valueState<number>('count', { default: 0 })

async function run(sources: number, counts: number): Promise<number> {
  const j = job(`parallelism-${sources}-${counts}`, { maxParallelism: 128 })
    .source('in', generatorSource({ records, keys }), { parallelism: sources })
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: counts }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    }).job
  const began = performance.now()
  await startJob(j, { checkpoints: false, logLevel: 'warn', progressIntervalMs: 0 }).done
  return records / ((performance.now() - began) / 1000)
}

const shapes: [number, number][] = [
  [1, 1],
  [1, 2],
  [2, 2],
  [2, 1],
]
const results = new Map<string, number[]>()
for (let r = 0; r < rounds; r++) {
  for (const [s, k] of shapes) {
    const name = `source ${s}, keyed ${k}`
    results.set(name, [...(results.get(name) ?? []), await run(s, k)])
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const base = median(results.get('source 1, keyed 1')!)
console.log(`node ${process.version}; ${records / 1e6}M records, ${keys / 1000}k keys, ${rounds} interleaved rounds, one thread\n`)
console.log('| parallelism | records/s (each round) | median | vs source 1, keyed 1 |\n| --- | --- | --- | --- |')
for (const [name, xs] of results) console.log(`| ${name} | ${xs.map((x) => `${(x / 1e6).toFixed(2)}M`).join(' ')} | ${(median(xs) / 1e6).toFixed(2)}M | ${(median(xs) / base).toFixed(2)} |`)
