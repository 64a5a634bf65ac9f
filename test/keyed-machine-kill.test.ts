/**
 * Keyed machines across process crashes: a child process runs a job with a keyed XState machine
 * whose every event schedules a delayed event, with checkpoints; it is killed with SIGKILL
 * part-way several times (restored each time with another parallelism), and finally runs to the
 * end. Every key must have applied each record once and delivered each delayed event once: the
 * pending delayed events live in the key's state and in timers of the same snapshots.
 */
import t from 'tap'
import { generatedRecord, readSnapshotState } from '../index.ts'
import { embeddedTestStore } from './support/stores.ts'
import { killPartWayThenFinish } from './support/kill-runs.ts'
import { RESTORE_OFF, faultTest, type Checks, type Mutation } from './support/controls.ts'

const body = async (t: Checks, mutation: Mutation | undefined) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  const job = 'machines-kill'
  const gen = { records: 30_000, keys: 100, seed: 6 }
  const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '10000' }
  await ts.store.open()
  await killPartWayThenFinish(t, { jobFile: 'test/fixtures/machine-job.ts', store: ts, job, env, records: gen.records, killed: ['2', '3', '1'], last: '2' }, mutation)

  const expected = new Map<string, number>()
  for (let seq = 0; seq < gen.records; seq++) {
    const { key } = generatedRecord(gen, seq)
    expected.set(key, (expected.get(key) ?? 0) + 1)
  }
  const got = (await readSnapshotState(ts.store, job, 'counters', 'machine')) as Map<string, { s: { context: { count: number; pings: number } }; d: unknown[] }>
  t.equal(got.size, expected.size, 'every key has its machine')
  let wrong = 0
  for (const [key, n] of expected) {
    const m = got.get(key)
    if (m === undefined || m.s.context.count !== n || m.s.context.pings !== n || m.d.length !== 0) wrong++
  }
  t.equal(wrong, 0, 'every key applied each record once and delivered each delayed event once, none pending')
}

faultTest(t, 'keyed machines - delayed events fire exactly once across SIGKILLs and restores with another parallelism', body, [{ mutation: RESTORE_OFF, because: /run 2 \(parallelism 3\) restored snapshot \d+/ }])
