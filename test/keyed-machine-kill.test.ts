/**
 * Keyed machines across process crashes: a child process runs a job with a keyed XState machine
 * whose every event schedules a delayed event, with checkpoints; it is killed with SIGKILL
 * part-way several times (restored each time with another parallelism), and finally runs to the
 * end. Every key must have applied each record once and delivered each delayed event once: the
 * pending delayed events live in the key's state and in timers of the same snapshots.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { generatedRecord, readSnapshotState } from '../index.ts'
import { embeddedTestStore } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const { NODE_V8_COVERAGE: _coverage, ...parentEnv } = process.env

function startRun(storeArgs: string[], env: Record<string, string>): { child: ChildProcess; exit: Promise<number | null>; output: () => string } {
  let output = ''
  const child = spawn(
    process.execPath,
    ['bin/weir.js', 'run', 'test/fixtures/machine-job.ts', ...storeArgs, '--restore', 'latest', '--checkpoint-interval', '50', '--log-level', 'info'],
    { cwd: root, env: { ...parentEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exit, output: () => output }
}

async function waitFor(check: () => boolean, timeoutMs = 120_000): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

t.test('keyed machines - delayed events fire exactly once across SIGKILLs and restores with another parallelism', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  const job = 'machines-kill'
  const gen = { records: 30_000, keys: 100, seed: 6 }
  const env = { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '10000' }
  await ts.store.open()
  const parallelisms = ['2', '3', '1']
  let kills = 0
  for (let kill = 0; kill < parallelisms.length; kill++) {
    const run = startRun(ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: parallelisms[kill]! })
    const checkpointed = await Promise.race([waitFor(() => /checkpoint completed/.test(run.output())), run.exit.then(() => false)])
    const wait = Math.floor(Math.random() * 400)
    if (checkpointed) await new Promise((r) => setTimeout(r, wait))
    run.child.kill('SIGKILL')
    const code = await run.exit
    if (code === 0) {
      t.comment(`run ${kill + 1} finished before the kill`)
      break
    }
    t.equal(code, null, `run ${kill + 1} (parallelism ${parallelisms[kill]}) was killed ${wait} ms after its first checkpoint`)
    kills++
  }
  t.ok(kills >= 2, `the job was killed part-way at least twice (${kills})`)
  const last = startRun(ts.cliArgs, { ...env, WEIR_FIXTURE_PARALLELISM: '2' })
  t.equal(await last.exit, 0, 'the last run finishes', { output: last.output() })

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
})
