/**
 * Windows across process crashes: a child process runs test/fixtures/window-job.ts (hour totals
 * rolled up into day totals, event time, checkpoints every 50 ms) through the `weir` CLI, is
 * killed with SIGKILL at random moments, and is started again with `--restore latest`, the last
 * time with another parallelism. The files sinks are at-least-once, so a result may be written
 * twice; every result written must have exactly the expected value, and every expected result
 * must be there. A window whose state counted a record twice or missed one after a restore, or
 * a timer lost in a snapshot, fails this.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { RESTORE_OFF, faultTest, type Checks, type Mutation } from './support/controls.ts'
import { killPartWayThenFinish } from './support/kill-runs.ts'
import { embeddedTestStore } from './support/stores.ts'
import { events, tumblingSums } from './support/windows.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR


/** Every result line of the files `path`, `path.1`, ...: `key@start` -> the distinct values written. */
function written(path: string): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>()
  for (let i = 0; ; i++) {
    const file = i === 0 ? path : `${path}.${i}`
    if (!existsSync(file)) break
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line === '') continue
      const r = JSON.parse(line) as { key: string; window: { start: number }; value: number }
      const id = `${r.key}@${r.window.start}`
      const values = out.get(id) ?? new Set<number>()
      values.add(r.value)
      out.set(id, values)
    }
  }
  return out
}

const body = async (t: Checks, mutation: Mutation | undefined) => {
  const ts = embeddedTestStore()
  const dir = mkdtempSync(join(tmpdir(), 'weir-window-results-'))
  t.teardown(async () => {
    await ts.cleanup()
    rmSync(dir, { recursive: true, force: true })
  })
  const gen = { records: 40_000, keys: 50 }
  const job = 'windows-crash'
  const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_RATE: '20000', WEIR_FIXTURE_OUT: join(dir, 'results') }
  await ts.store.open()
  await killPartWayThenFinish(t, { jobFile: 'test/fixtures/window-job.ts', store: ts, job, env, records: gen.records, killed: ['2', '2', '2'], last: '3' }, mutation)
  const evs = events({ records: gen.records, keys: gen.keys, stepMs: 10_000, disorderMs: 300_000 })
  for (const [what, path, expected] of [
    ['hour', join(dir, 'results.hours'), tumblingSums(evs, HOUR)],
    ['day', join(dir, 'results.days'), tumblingSums(evs, DAY)],
  ] as const) {
    const got = written(path)
    t.equal(got.size, expected.size, `${what}: a result for every key and ${what}`)
    const wrong = [...expected].filter(([id, value]) => got.get(id)?.size !== 1 || !got.get(id)!.has(value))
    t.equal(wrong.length, 0, `${what}: every result written has exactly the expected value`, { wrong: wrong.slice(0, 5) })
  }
}

faultTest(t, 'windows after crashes - SIGKILL at random moments, each run restores the latest checkpoint (the last at another parallelism), exact hour and day totals', body, [
  { mutation: RESTORE_OFF, because: /run 2 \(parallelism 2\) restored snapshot \d+/ },
])
