/**
 * `weir run --workers N`: the job's nodes as worker threads of one process, over the in-process
 * bus, writing through one embedded store. Exact state at the end, also when a worker thread
 * dies part-way; cancel on SIGTERM; clear errors for what --workers cannot run.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { assertFinalState, expectedState } from './support/counting.ts'
import { embeddedTestStore, postgresTestStore } from './support/stores.ts'
import { waitFor } from './support/kill-runs.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

interface Run {
  code: Promise<number | null>
  output: () => string
  pid: number
}

function weir(args: string[], env: Record<string, string> = {}): Run {
  let out = ''
  const child = spawn(process.execPath, ['bin/weir.js', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
  return {
    code: new Promise((r) =>
      child.once('exit', (c) => {
        clearTimeout(timer)
        r(c)
      }),
    ),
    output: () => out,
    pid: child.pid!,
  }
}

function fixtureEnv(job: string, records: number, rate: number): Record<string, string> {
  return { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(records), WEIR_FIXTURE_KEYS: '500', WEIR_FIXTURE_SEED: '5', WEIR_FIXTURE_RATE: String(rate) }
}

async function runToTheEnd(tt: Test, kind: 'embedded' | 'postgres'): Promise<void> {
  const ts = kind === 'embedded' ? embeddedTestStore() : postgresTestStore()
  tt.teardown(() => ts.cleanup())
  const job = `workers-${kind}-${process.pid}`
  const run = weir(['run', 'test/fixtures/counting-job.ts', '--workers', '2', '--checkpoint-interval', '300', ...ts.cliArgs], fixtureEnv(job, 100_000, 50_000))
  tt.equal(await run.code, 0, 'exits 0', { output: run.output() })
  tt.match(run.output(), /deploying epoch=\d+ attempt=1 from=nothing nodes="w1 w2" parallelism=\{"in":1,"count":2\}/, 'the job ran on both workers')
  tt.match(run.output(), /job finished workers=2/)
  await ts.store.open()
  await assertFinalState(tt, ts, job, expectedState({ records: 100_000, keys: 500, seed: 5 }))
}

t.test('two workers run a job to the end with exact state (embedded store)', (tt) => runToTheEnd(tt, 'embedded'))
t.test('two workers run a job to the end with exact state (Postgres)', (tt) => runToTheEnd(tt, 'postgres'))

/**
 * Runs worker-exit-job.ts, whose worker counting record 60000 ends itself (or hangs, `hang`),
 * once; asserts the run exits 0 with exact state and returns its output for the test's checks.
 */
async function runWithFaultyWorker(tt: Test, name: string, hang: boolean): Promise<string> {
  const ts = embeddedTestStore()
  const dir = mkdtempSync(join(tmpdir(), 'weir-workers-'))
  tt.teardown(async () => {
    await ts.cleanup()
    rmSync(dir, { recursive: true, force: true })
  })
  const job = `workers-${name}-${process.pid}`
  const env = { ...fixtureEnv(job, 120_000, 40_000), WEIR_FIXTURE_EXIT_AT: '60000', WEIR_FIXTURE_EXIT_MARKER: join(dir, name), ...(hang ? { WEIR_FIXTURE_HANG: '1' } : {}) }
  const run = weir(['run', 'test/fixtures/worker-exit-job.ts', '--workers', '2', '--checkpoint-interval', '300', ...ts.cliArgs], env)
  tt.equal(await run.code, 0, 'exits 0: the job finished on the worker left', { output: run.output() })
  await ts.store.open()
  await assertFinalState(tt, ts, job, expectedState({ records: 120_000, keys: 500, seed: 5 }))
  return run.output()
}

// The faulty worker may have been the coordinator: then the other takes the lease (epoch 3: the
// first is the main thread's check that no other runner holds the job) and restores.
const RECOVERED = /recovering the job reason="node w[12] stopped answering|coordinating the job node=w[12] epoch=3/

t.test('a worker thread that dies part-way: the other recovers the job, exact', async (tt) => {
  const out = await runWithFaultyWorker(tt, 'exit', false)
  tt.match(out, /worker (w[12]) exited with code 7; the others go on with its part of the job/)
  tt.match(out, RECOVERED, 'the survivor recovered the job without it')
  tt.match(out, /deploying epoch=\d+ attempt=\d+ from=\d+ nodes=w[12] parallelism=\{"in":1,"count":1\}/, 'onto one worker')
})

t.test('a worker stuck in user code that never returns: the main thread ends it, the other recovers, exact', async (tt) => {
  const out = await runWithFaultyWorker(tt, 'hang', true)
  tt.match(out, /worker w[12] stopped answering for \d+ ms \(user code that never returns\?\); ending its thread/)
  tt.match(out, RECOVERED, 'the other recovered the job without it')
})

t.test('SIGTERM cancels the job on every worker', async (tt) => {
  const ts = embeddedTestStore()
  tt.teardown(() => ts.cleanup())
  const run = weir(['run', 'test/fixtures/counting-job.ts', '--workers', '2', '--checkpoint-interval', '300', ...ts.cliArgs], fixtureEnv(`workers-cancel-${process.pid}`, 10_000_000, 20_000))
  tt.ok(await waitFor(() => /checkpoint completed/.test(run.output()), 30_000), 'the job runs')
  process.kill(run.pid, 'SIGTERM')
  tt.equal(await run.code, 143, '143, as plain weir run canceled by SIGTERM', { output: run.output() })
  tt.match(run.output(), /SIGTERM: canceling the job/)
  tt.match(run.output(), /job canceled workers=2/)
})

t.test('a job already running on the store: --workers says so and exits 1', async (tt) => {
  const ts = embeddedTestStore()
  tt.teardown(() => ts.cleanup())
  const env = fixtureEnv(`workers-twice-${process.pid}`, 10_000_000, 20_000)
  const first = weir(['run', 'test/fixtures/counting-job.ts', '--checkpoint-interval', '300', ...ts.cliArgs], env)
  tt.teardown(() => {
    try {
      process.kill(first.pid, 'SIGKILL')
    } catch {
      // already ended
    }
  })
  tt.ok(await waitFor(() => /checkpoint completed/.test(first.output()), 30_000), 'the first runner runs')
  const second = weir(['run', 'test/fixtures/counting-job.ts', '--workers', '2', ...ts.cliArgs], env)
  tt.equal(await second.code, 1, { output: second.output() })
  tt.match(second.output(), /job 'workers-twice-\d+' is already running on host \S+ as pid \d+/)
  process.kill(first.pid, 'SIGTERM')
  tt.equal(await first.code, 143, 'the first runner was not disturbed (143: canceled by SIGTERM)', { output: first.output() })
})

t.test('a worker that fails before the job starts fails the run (the others do not wait for it)', async (tt) => {
  const ts = embeddedTestStore()
  tt.teardown(() => ts.cleanup())
  const run = weir(['run', 'test/fixtures/worker-start-fail-job.ts', '--workers', '2', ...ts.cliArgs], fixtureEnv(`workers-start-${process.pid}`, 10_000, 20_000))
  tt.equal(await run.code, 1, { output: run.output() })
  tt.match(run.output(), /job failed error="worker w[12] ended before the job started: .*this worker cannot load the job/)
})

t.test('what --workers cannot run is refused clearly', async (tt) => {
  const zero = weir(['run', 'test/fixtures/counting-job.ts', '--workers', '0'])
  tt.equal(await zero.code, 2)
  tt.match(zero.output(), /--workers must be at least 1/)
  const restart = weir(['run', 'test/fixtures/counting-job.ts', '--workers', '2', '--restart', 'none'])
  tt.equal(await restart.code, 2)
  tt.match(restart.output(), /--restart does not apply with --workers/)
  const cycle = weir(['run', 'test/fixtures/message-cycle-job.ts', '--workers', '2'])
  tt.equal(await cycle.code, 2)
  tt.match(cycle.output(), /--workers: .*cycle/)
})
