/**
 * Exactly-once messages across process crashes (docs/architecture.md section 15): a child process
 * runs a job whose two keyed operators send each other chains of messages (a cycle, with
 * self-sends), checkpointing every 50-100 ms; it is killed with SIGKILL at random moments several
 * times and started again with `--restore latest`, the last time with another parallelism. The
 * final state must count every record and every message exactly once.
 */
import t from 'tap'
import { RESTORE_OFF, faultTest, type Checks, type Mutation } from './support/controls.ts'
import { killPartWayThenFinish } from './support/kill-runs.ts'
import { assertCycleState, expectedCycleState } from './support/message-cycle.ts'
import { testStores } from './support/stores.ts'

for (const { name, make } of testStores) {
  const body = async (t: Checks, mutation: Mutation | undefined) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `cycle-kill-${name}`
    const gen = { records: 150_000, keys: 60, seed: 5 }
    const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '40000' }
    await ts.store.open()
    // Checkpoints every 50-100 ms; the last run restores at another parallelism: ping 3 and pong 4 instead of 2 and 3.
    const plan = { jobFile: 'test/fixtures/message-cycle-job.ts', store: ts, job, env, records: gen.records, killed: ['2', '2', '2', '2'], last: '3', killWithinMs: 500, intervalMs: () => 50 + Math.floor(Math.random() * 50) }
    const last = await killPartWayThenFinish(t, plan, mutation)
    t.match(last.output(), /instance=pong\[3\]/, 'with four instances of pong')
    await assertCycleState(t, ts, job, expectedCycleState(gen))
  }
  faultTest(t, `message cycle (${name}) - SIGKILL at random moments, each run restores the latest checkpoint, rescale at the end, exact final state`, body, [
    { mutation: RESTORE_OFF, because: /run 2 \(parallelism 2\) restored snapshot \d+/ },
  ])
}
