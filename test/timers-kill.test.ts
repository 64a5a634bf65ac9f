/**
 * Timers across process crashes: a child process runs a job with event-time timers and
 * checkpoints, is killed with SIGKILL part-way several times (restored each time with another
 * parallelism of the keyed operator), and finally runs to the end. Every timer must have fired
 * exactly once: the timers and the state they change are in the same snapshots.
 */
import t from 'tap'
import { generatedRecord, readSnapshotState } from '../index.ts'
import { embeddedTestStore } from './support/stores.ts'
import { WINDOW } from './fixtures/timers-job.ts'
import { killPartWayThenFinish } from './support/kill-runs.ts'
import { RESTORE_OFF, faultTest, type Checks, type Mutation } from './support/controls.ts'

const body = async (t: Checks, mutation: Mutation | undefined) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  const job = 'timers-kill'
  const gen = { records: 60_000, keys: 200, seed: 4 }
  const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '20000' }
  await ts.store.open()
  await killPartWayThenFinish(t, { jobFile: 'test/fixtures/timers-job.ts', store: ts, job, env, records: gen.records, killed: ['2', '3', '1'], last: '2' }, mutation)

  const expected = new Map<string, Set<number>>()
  for (let seq = 0; seq < gen.records; seq++) {
    const { key } = generatedRecord(gen, seq)
    const times = expected.get(key) ?? new Set<number>()
    times.add((Math.floor(seq / WINDOW) + 1) * WINDOW - 1)
    expected.set(key, times)
  }
  const got = (await readSnapshotState(ts.store, job, 'windows', 'fired-at')) as Map<string, Map<number, number>>
  t.equal(got.size, expected.size, 'every key fired timers')
  let wrong = 0
  for (const [key, times] of expected) {
    const fired = got.get(key)
    if (fired === undefined || fired.size !== times.size || [...times].some((time) => fired.get(time) !== 1)) wrong++
  }
  t.equal(wrong, 0, 'every timer of every key fired exactly once')
}

faultTest(t, 'timers fire exactly once across SIGKILLs and restores with another parallelism', body, [{ mutation: RESTORE_OFF, because: /run 2 \(parallelism 3\) restored snapshot \d+/ }])
