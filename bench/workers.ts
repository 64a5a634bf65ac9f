/**
 * `weir run --workers 2` against `weir run` (one thread) and `--workers 1` on the same job (bench/cluster-job.ts:
 * a generator with 8 splits -> keyBy -> count, 100k keys, checkpoints every second to the
 * embedded store), interleaved, in this script: once as is (the count costs well under a
 * microsecond per record) and once with WEIR_BENCH_WORK rounds of arithmetic per record.
 *
 *   node --import tsx bench/workers.ts [rounds]
 *
 * Prints a Markdown table for BENCHMARKS.md. Not a test: nothing here asserts.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const rounds = Number(process.argv[2] ?? 3)

/** Timestamp (ms) of the first log line matching `re`. */
function at(out: string, re: RegExp): number {
  for (const line of out.split('\n')) if (re.test(line)) return Date.parse(line.slice(0, 24))
  throw new Error(`no line matches ${re}:\n${out.slice(-2000)}`)
}

/** Records per second from the job's start to its end (the final checkpoint included); 0 workers: plain `weir run`. */
async function run(workers: number, records: number, work: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-workers-'))
  const args = ['bin/weir.js', 'run', 'bench/cluster-job.ts', '--checkpoint-interval', '1000', '--store-dir', dir, ...(workers > 0 ? ['--workers', String(workers)] : [])]
  let out = ''
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, WEIR_BENCH_RECORDS: String(records), WEIR_BENCH_KEYS: '100000', WEIR_BENCH_WORK: String(work) }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const code = await new Promise((r) => child.once('exit', r))
  rmSync(dir, { recursive: true, force: true })
  if (code !== 0) throw new Error(`weir run failed:\n${out.slice(-2000)}`)
  const [start, end] = workers > 0 ? [/deploying epoch=1 attempt=1/, /final checkpoint completed/] : [/job -> running/, /job -> finished/]
  return records / ((at(out, end) - at(out, start)) / 1000)
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const f = (x: number) => `${(x / 1e6).toFixed(2)}M/s`
console.log(`node ${process.version}, ${cpus().length} cores; ${rounds} interleaved rounds\n`)
console.log('| job | one thread (weir run) | 1 worker | 2 workers | 2 workers / one thread | 2 workers / 1 worker |\n| --- | --- | --- | --- | --- | --- |')
for (const [label, records, work] of [
  ['keyed count, 4M records, 100k keys', 4_000_000, 0],
  ['keyed count + 200 rounds of arithmetic per record, 1M records', 1_000_000, 200],
] as const) {
  const one: number[] = []
  const single: number[] = []
  const two: number[] = []
  for (let r = 0; r < rounds; r++) {
    one.push(await run(0, records, work))
    single.push(await run(1, records, work))
    two.push(await run(2, records, work))
  }
  const ratio = (a: number[], b: number[]) => `${(median(a) / median(b)).toFixed(2)}x`
  console.log(`| ${label} | ${one.map(f).join(' ')} | ${single.map(f).join(' ')} | ${two.map(f).join(' ')} | ${ratio(two, one)} | ${ratio(two, single)} |`)
}
