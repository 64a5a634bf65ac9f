/**
 * Exactly-once state across process crashes: a child process runs the counting job through the
 * `weir` CLI, is killed with SIGKILL at random moments several times, and is started again with
 * `--restore latest` each time. Each run must restore the latest completed checkpoint, whose
 * state must hold exactly the records before its source offset; the last run must read only the
 * records after it, and the final state must equal the expected state exactly. The control runs
 * the same body with restore switched off and must fail.
 */
import t from 'tap'
import { RESTORE_OFF, faultTest, type Checks, type Mutation } from './support/controls.ts'
import { assertFinalState, expectedState } from './support/counting.ts'
import { generatorOffset, killPartWayThenFinish } from './support/kill-runs.ts'
import { testStores, type TestStore } from './support/stores.ts'

function fixtureEnv(job: string, gen: { records: number; keys: number; seed: number }): Record<string, string> {
  return { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '25000' }
}

/** The state in snapshot `id` is the state of exactly the records before its offset: none missing, none twice. */
function stateMatchesOffset(ts: TestStore, job: string, gen: { keys: number; seed: number }) {
  return async (t: Checks, id: number) => {
    const offset = await generatorOffset(ts.store, job, id)
    await assertFinalState(t, ts, job, expectedState({ ...gen, records: offset }), id)
  }
}

for (const { name, make } of testStores) {
  const body = async (t: Checks, mutation: Mutation | undefined) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `kill-${name}`
    const gen = { records: 150_000, keys: 500, seed: 5 }
    await ts.store.open()
    const plan = { jobFile: 'test/fixtures/counting-job.ts', store: ts, job, env: fixtureEnv(job, gen), records: gen.records, killed: ['2', '2', '2', '2'], last: '2', killWithinMs: 600 }
    await killPartWayThenFinish(t, { ...plan, checkSnapshot: stateMatchesOffset(ts, job, gen) }, mutation)
    await assertFinalState(t, ts, job, expectedState(gen))
  }
  faultTest(t, `crash recovery (${name}) - SIGKILL at random moments, each run restores the latest checkpoint and replays from its offset, exact final state`, body, [
    { mutation: RESTORE_OFF, because: /run 2 \(parallelism 2\) restored snapshot \d+/ },
  ])
}

faultTest(
  t,
  'rescaling - killed at parallelism 2 and 3, restored at parallelism 3 and 1, exact final state',
  async (t, mutation) => {
    const ts = testStores[0]!.make()
    t.teardown(() => ts.cleanup())
    const job = 'rescale'
    const gen = { records: 100_000, keys: 700, seed: 8 }
    await ts.store.open()
    const plan = { jobFile: 'test/fixtures/counting-job.ts', store: ts, job, env: fixtureEnv(job, gen), records: gen.records, killed: ['2', '3'], last: '1' }
    const last = await killPartWayThenFinish(t, { ...plan, checkSnapshot: stateMatchesOffset(ts, job, gen) }, mutation)
    t.match(last.output(), /instance=count\[0\]/, 'the last run has one instance of the keyed operator')
    t.notOk(/instance=count\[1\]/.test(last.output()), 'and no second one')
    await assertFinalState(t, ts, job, expectedState(gen))
  },
  [{ mutation: RESTORE_OFF, because: /run 2 \(parallelism 3\) restored snapshot \d+/ }],
)
