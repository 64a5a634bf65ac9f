/**
 * Exactly-once messages across process crashes (docs/architecture.md section 15): a child process
 * runs a job whose two keyed operators send each other chains of messages (a cycle, with
 * self-sends), checkpointing every 50-100 ms; it is killed with SIGKILL at random moments several
 * times and started again with `--restore latest`, the last time with another parallelism. The
 * final state must count every record and every message exactly once.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { assertCycleState, expectedCycleState } from './support/message-cycle.ts'
import { testStores } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

// A child killed with SIGKILL writes no coverage: collecting it would only slow its start.
const { NODE_V8_COVERAGE: _coverage, ...parentEnv } = process.env

function startJob(storeArgs: string[], env: Record<string, string>, intervalMs: number): { child: ChildProcess; exit: Promise<number | null>; output: () => string } {
  let output = ''
  const child = spawn(
    process.execPath,
    ['bin/weir.js', 'run', 'test/fixtures/message-cycle-job.ts', ...storeArgs, '--restore', 'latest', '--checkpoint-interval', String(intervalMs), '--log-level', 'info'],
    { cwd: root, env: { ...parentEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exit, output: () => output }
}

/** Resolves true once `check` holds (polling every 20 ms), false after `timeoutMs`. */
async function waitFor(check: () => boolean, timeoutMs = 120_000): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

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
      const run = startJob(ts.cliArgs, env, 50 + Math.floor(Math.random() * 50))
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
    const last = startJob(ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: '3' }, 70)
    const guard = setTimeout(() => last.child.kill('SIGKILL'), 120_000)
    const code = await last.exit
    clearTimeout(guard)
    t.equal(code, 0, 'the last run finishes', { output: last.output() })
    t.match(last.output(), /job finished/)
    t.match(last.output(), /instance=pong\[3\]/, 'with four instances of pong')
    await assertCycleState(t, ts, job, expectedCycleState(gen))
  })
}
