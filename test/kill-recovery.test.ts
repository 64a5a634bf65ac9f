/**
 * Exactly-once state across process crashes: a child process runs the counting job through the
 * `weir` CLI, is killed with SIGKILL at random moments several times, and is started again with
 * `--restore latest` each time. The final state must equal the expected state exactly.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { assertFinalState, expectedState } from './support/counting.ts'
import { testStores } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

// A child killed with SIGKILL writes no coverage: collecting it (c8 under npm test) would only slow its start.
const { NODE_V8_COVERAGE: _coverage, ...parentEnv } = process.env

function startJob(storeArgs: string[], env: Record<string, string>): { child: ChildProcess; exit: Promise<number | null>; output: () => string } {
  let output = ''
  const child = spawn(
    process.execPath,
    ['bin/weir.js', 'run', 'test/fixtures/counting-job.ts', ...storeArgs, '--restore', 'latest', '--checkpoint-interval', '50', '--log-level', 'info'],
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
  t.test(`crash recovery (${name}) - SIGKILL at random moments, restore from latest, exact final state`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `kill-${name}`
    const gen = { records: 150_000, keys: 500, seed: 5 }
    const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '25000' }
    await ts.store.open()
    const restoredFrom: number[] = []
    let kills = 0
    for (let kill = 0; kill < 4; kill++) {
      const run = startJob(ts.cliArgs, env)
      // Killed at a random moment after this run completed a checkpoint of its own, so every
      // kill lands part-way and leaves something newer to restore, however slow the start-up.
      const checkpointed = await Promise.race([
        waitFor(() => /checkpoint completed/.test(run.output())),
        run.exit.then(() => false),
      ])
      const wait = Math.floor(Math.random() * 600)
      if (checkpointed) await new Promise((r) => setTimeout(r, wait))
      run.child.kill('SIGKILL')
      const code = await run.exit
      if (code === 0) {
        // On a slow machine the waits may add up to the whole job: it finished before this kill.
        t.comment(`run ${kill + 1} finished before the kill`)
        break
      }
      t.equal(code, null, `run ${kill + 1} was killed ${wait} ms after its first checkpoint`)
      kills++
      const latest = await ts.store.latestCompleted(job)
      restoredFrom.push(latest?.id ?? 0)
      const restored = /restoring snapshot=(\d+)/.exec(run.output())
      t.comment(`run ${kill + 1}: killed ${wait} ms after its first checkpoint; restored from ${restored?.[1] ?? 'nothing'}; latest completed now ${latest?.id ?? 'none'}`)
    }
    t.ok(kills >= 2, `the job was killed part-way at least twice (${kills})`)
    t.ok(restoredFrom.some((id) => id > 0), 'checkpoints completed between kills, so later runs resumed part-way')
    const last = startJob(ts.cliArgs, env)
    const code = await last.exit
    t.equal(code, 0, 'the last run finishes', { output: last.output() })
    t.match(last.output(), /job finished/)
    await assertFinalState(t, ts, job, expectedState(gen))
  })
}

t.test('rescaling - killed at parallelism 2, restored at parallelism 3, exact final state', async (t) => {
  const ts = testStores[0]!.make()
  t.teardown(() => ts.cleanup())
  const job = 'rescale'
  const gen = { records: 100_000, keys: 700, seed: 8 }
  const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '25000' }
  await ts.store.open()
  const first = startJob(ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: '2' })
  const checkpointed = await Promise.race([
    waitFor(() => /checkpoint completed/.test(first.output())),
    first.exit.then(() => false),
  ])
  t.ok(checkpointed, 'the first run completed a checkpoint', { output: first.output() })
  await new Promise((r) => setTimeout(r, 300))
  first.child.kill('SIGKILL')
  t.equal(await first.exit, null, 'the first run was killed part-way')
  const second = startJob(ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: '3' })
  // A run that hangs is killed after two minutes, so the failure shows what it printed.
  const guard = setTimeout(() => second.child.kill('SIGKILL'), 120_000)
  const code = await second.exit
  clearTimeout(guard)
  t.equal(code, 0, 'the rescaled run finishes', { output: second.output() })
  t.match(second.output(), /restoring snapshot=\d+/)
  t.match(second.output(), /instance=count\[2\]/, 'with three instances of the keyed operator')
  await assertFinalState(t, ts, job, expectedState(gen))
})
