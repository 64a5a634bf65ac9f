/**
 * Exactly-once messages across process crashes (docs/architecture.md section 15): a child process
 * runs a job whose two keyed operators send each other chains of messages (a cycle, with
 * self-sends), checkpointing every 50-100 ms; it is killed with SIGKILL at random moments several
 * times and started again with `--restore latest`, the last time with another parallelism. The
 * final state must count every record and every message exactly once.
 */
import t from 'tap'
import { startRun, waitFor } from './support/kill-runs.ts'
import { assertCycleState, expectedCycleState } from './support/message-cycle.ts'
import { testStores } from './support/stores.ts'




for (const { name, make } of testStores) {
  t.test(`message cycle (${name}) - SIGKILL at random moments, restore from latest, rescale at the end, exact final state`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `cycle-kill-${name}`
    const gen = { records: 150_000, keys: 60, seed: 5 }
    const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '40000', WEIR_FIXTURE_PARALLELISM: '2' }
    await ts.store.open()
    const restoredFrom: number[] = []
    let kills = 0
    for (let kill = 0; kill < 4; kill++) {
      const run = startRun('test/fixtures/message-cycle-job.ts', ts.cliArgs, env, 50 + Math.floor(Math.random() * 50))
      // Killed at a random moment after this run completed a checkpoint of its own, so every
      // kill lands part-way and leaves something newer to restore.
      const checkpointed = await Promise.race([waitFor(() => /checkpoint completed/.test(run.output())), run.exit.then(() => false)])
      const wait = Math.floor(Math.random() * 500)
      if (checkpointed) await new Promise((r) => setTimeout(r, wait))
      run.child.kill('SIGKILL')
      const code = await run.exit
      if (code === 0) {
        t.comment(`run ${kill + 1} finished before the kill`)
        break
      }
      t.equal(code, null, `run ${kill + 1} was killed ${wait} ms after its first checkpoint`, { output: code === null ? '' : run.output() })
      kills++
      const latest = await ts.store.latestCompleted(job)
      restoredFrom.push(latest?.id ?? 0)
      const restored = /restoring snapshot=(\d+)/.exec(run.output())
      t.comment(`run ${kill + 1}: killed ${wait} ms after its first checkpoint; restored from ${restored?.[1] ?? 'nothing'}; latest completed now ${latest?.id ?? 'none'}`)
    }
    t.ok(kills >= 2, `the job was killed part-way at least twice (${kills})`)
    t.ok(restoredFrom.some((id) => id > 0), 'checkpoints completed between kills, so later runs resumed part-way')
    // The last run restores at another parallelism: ping 3 and pong 4 instead of 2 and 3.
    const last = startRun('test/fixtures/message-cycle-job.ts', ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: '3' }, 70)
    const guard = setTimeout(() => last.child.kill('SIGKILL'), 120_000)
    const code = await last.exit
    clearTimeout(guard)
    t.equal(code, 0, 'the last run finishes', { output: last.output() })
    t.match(last.output(), /job finished/)
    t.match(last.output(), /instance=pong\[3\]/, 'with four instances of pong')
    await assertCycleState(t, ts, job, expectedCycleState(gen))
  })
}
