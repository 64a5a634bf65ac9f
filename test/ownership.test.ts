/**
 * One owner per job (docs/architecture.md section 8), shown with real processes on both stores: a
 * second runner is refused at once; a runner stopped (SIGSTOP) past its lease expiry while
 * another takes over cannot complete or prune anything once resumed; a lock left by a killed
 * runner is taken over, even when the next runner starts at once through a shell and the killed
 * one is not yet reaped; read-only commands create nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { faultTest, type Checks, type Mutation } from './support/controls.ts'
import { assertFinalState, expectedState } from './support/counting.ts'
import { restoredId, startChild, waitFor, weirRunArgs, type Run } from './support/kill-runs.ts'
import { pgClient, PG_URL, testStores, type TestStore } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const EXPIRY_MS = 1500

interface Runner {
  child: ChildProcess
  exit: Promise<number | null>
  output: () => string
}

/** Starts test/fixtures/lease-runner.ts (the counting job, restore latest, checkpoints every 50 ms). */
function startRunner(ts: TestStore, env: Record<string, string>): Runner {
  const storeEnv =
    ts.kind === 'embedded'
      ? { WEIR_LEASE_STORE: ts.cliArgs[3]! }
      : { WEIR_LEASE_STORE: PG_URL, WEIR_LEASE_SCHEMA: ts.cliArgs[3]! }
  let output = ''
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/lease-runner.ts'], {
    cwd: root,
    env: { ...process.env, ...storeEnv, WEIR_LEASE_EXPIRY_MS: String(EXPIRY_MS), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exit, output: () => output }
}

/** Runs `weir` with arguments and returns its exit code and output. */
function weir(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    let output = ''
    const child = spawn(process.execPath, ['bin/weir.js', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.once('exit', (code) => resolve({ code, output }))
  })
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function fixtureEnv(job: string, gen: { records: number; keys: number; seed: number }, rate: number): Record<string, string> {
  return { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: String(rate) }
}

for (const { name, make } of testStores) {
  t.test(`lease (${name}) - a second runner is refused at once with JobAlreadyRunningError naming the holder; nothing in the store changed`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `second-${name}`
    await ts.store.open()
    // A long expiry: the first runner stays the live holder while it is stopped below.
    const first = startRunner(ts, { ...fixtureEnv(job, { records: 1_000_000, keys: 100, seed: 1 }, 20_000), WEIR_LEASE_EXPIRY_MS: '30000' })
    t.teardown(() => void first.child.kill('SIGKILL'))
    await until('a first checkpoint', async () => (await ts.store.latestCompleted(job)) !== undefined)
    // Stopped, so that whatever changes in the store from now on is the second runner's doing.
    first.child.kill('SIGSTOP')
    await sleep(200)
    const before = await ts.store.listSnapshots(job)
    const started = Date.now()
    const second = startRunner(ts, fixtureEnv(job, { records: 1_000, keys: 100, seed: 1 }, 20_000))
    const code = await second.exit
    t.equal(code, 1, 'the second runner exits 1')
    const line = second.output().split('\n').find((l) => l.startsWith('JobAlreadyRunningError: '))
    t.match(line, new RegExp(`^JobAlreadyRunningError: job '${job}' is already running on host ${hostname()} as pid ${first.child.pid} since \\d{4}-\\d\\d-\\d\\dT[^ ]+Z; stop that runner first`))
    t.ok(Date.now() - started < 15_000, 'refused without waiting for the 30 s expiry')
    t.same(await ts.store.listSnapshots(job), before, 'the store is exactly as before')
    first.child.kill('SIGCONT')
    first.child.kill('SIGKILL')
    await first.exit
  })

  t.test(`lease (${name}) - a runner stopped past its lease cannot complete or prune once resumed; the new owner's result is exact`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `fenced-${name}`
    const gen = { records: 90_000, keys: 400, seed: 4 }
    await ts.store.open()
    const first = startRunner(ts, fixtureEnv(job, gen, 20_000))
    t.teardown(() => void first.child.kill('SIGKILL'))
    await until('a first checkpoint', async () => (await ts.store.latestCompleted(job)) !== undefined)
    await sleep(200)
    first.child.kill('SIGSTOP')
    const stoppedAt = (await ts.store.latestCompleted(job))!.id
    await sleep(EXPIRY_MS + 500)
    const second = startRunner(ts, fixtureEnv(job, gen, 20_000))
    t.teardown(() => void second.child.kill('SIGKILL'))
    // The first runner resumes while the second one owns the job and checkpoints.
    await until('a checkpoint of the second runner', async () => ((await ts.store.latestCompleted(job))?.id ?? 0) > stoppedAt + 1)
    first.child.kill('SIGCONT')
    const [firstCode, secondCode] = await Promise.all([first.exit, second.exit])
    t.equal(secondCode, 0, 'the second runner finishes', { output: second.output() })
    t.equal(firstCode, 1, 'the resumed runner exits 1', { output: first.output() })
    t.match(first.output(), /^FencedError: cannot [a-z ]+ for job 'fenced-[a-z]+': the lease of epoch 1 was lost/m, 'it stops with FencedError')
    const snapshots = await ts.store.listSnapshots(job)
    // The first runner's snapshots are attempt 1; the second restored one of them and runs attempt 2.
    const completedByFirst = snapshots.filter((s) => s.status === 'completed' && s.attempt === 1 && s.id > stoppedAt)
    t.same(completedByFirst.map((s) => s.id), [], 'the first runner completed nothing after it was stopped')
    const final = second.output().match(/job finished lastCheckpoint=(\d+)/)
    t.equal((await ts.store.latestCompleted(job))?.id, Number(final?.[1]), "the second runner's final checkpoint is the latest")
    await assertFinalState(t, ts, job, expectedState(gen))
  })

  t.test(`lease (${name}) - a lock left by a SIGKILLed runner is taken over at once`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `killed-${name}`
    const gen = { records: 40_000, keys: 300, seed: 6 }
    await ts.store.open()
    // The default 10 s expiry: only the dead pid lets the next runner in quickly.
    const first = startRunner(ts, { ...fixtureEnv(job, gen, 20_000), WEIR_LEASE_EXPIRY_MS: '10000' })
    await until('a first checkpoint', async () => (await ts.store.latestCompleted(job)) !== undefined)
    first.child.kill('SIGKILL')
    t.equal(await first.exit, null, 'the first runner was killed')
    const started = Date.now()
    const second = startRunner(ts, { ...fixtureEnv(job, gen, 20_000), WEIR_LEASE_EXPIRY_MS: '10000' })
    t.equal(await second.exit, 0, 'the next runner takes over and finishes', { output: second.output() })
    t.match(second.output(), /restoring snapshot=\d+/)
    t.ok(Date.now() - started < 9_000, `without waiting for the expiry (${Date.now() - started} ms)`)
    await assertFinalState(t, ts, job, expectedState(gen))
  })
}

/** The old behaviour: every unexpired holder whose pid answers is refused, a zombie included. */
const TAKEOVER_REFUSED: Mutation = { name: 'takeover refused', describe: 'an unexpired lease is refused at once (WEIR_LEASE_TAKEOVER=refuse)', env: { WEIR_LEASE_TAKEOVER: 'refuse' } }

/**
 * `kill -9` of a running `weir run`, then at once `exec weir run ... --restore latest` from the
 * shell that started it. The killed runner stays a zombie child of the new one (node never reaps a
 * child it did not spawn), so its pid still answers `kill(pid, 0)` and its lease is unexpired.
 * `$1` is the first runner's log, `$2` how long to let it run after its first checkpoint, the rest
 * the command of both runners.
 */
const KILL_THEN_RESUME = `
log=$1; delay=$2; shift 2
"$@" >"$log" 2>&1 &
pid=$!
tries=0
while [ $tries -lt 1500 ] && ! grep -q 'checkpoint completed' "$log"; do sleep 0.02; tries=$((tries + 1)); done
sleep "$delay"
kill -9 "$pid"
exec "$@"
`

const ROUNDS = 5

/** The refusal a runner printed, if it was refused. */
function refusal(output: string): string | undefined {
  return output.split('\n').find((l) => l.includes('JobAlreadyRunningError'))
}

for (const { name, make } of testStores) {
  const body = async (t: Checks, mutation: Mutation | undefined) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const job = `resume-${name}`
    const gen = { records: 300_000, keys: 400, seed: 9 }
    await ts.store.open()
    const logs = mkdtempSync(join(tmpdir(), 'weir-resume-'))
    t.teardown(() => rmSync(logs, { recursive: true, force: true }))
    const env = fixtureEnv(job, gen, 25_000)
    const live = new Set<Run>()
    t.teardown(() => {
      for (const run of live) run.child.kill('SIGKILL')
    })
    let resumed: Run | undefined
    for (let round = 1; round <= ROUNDS; round++) {
      const delay = (Math.random() * 0.3).toFixed(2)
      const script = [KILL_THEN_RESUME, 'sh', join(logs, `run-${round}.log`), delay, process.execPath, ...weirRunArgs('test/fixtures/counting-job.ts', ts.cliArgs, 50, mutation)]
      resumed = startChild('sh', ['-c', ...script], env, mutation)
      live.add(resumed)
      const run = resumed
      let exited = false
      void run.exit.then(() => (exited = true))
      await waitFor(() => exited || /checkpoint completed/.test(run.output()), 60_000)
      const what = `round ${round}: the runner started at once after kill -9 of the one before`
      t.equal(refusal(run.output()), undefined, `${what} is not refused`)
      t.match(run.output(), /checkpoint completed/, `${what} checkpoints`, { output: run.output().slice(-2000) })
      t.ok(restoredId(run.output()) !== undefined, `${what} restored a snapshot`)
      t.notOk(/waiting up to \d+ ms for the lease/.test(run.output()), `${what} did not wait for the dead one's lease`)
      if (round < ROUNDS) {
        run.child.kill('SIGKILL')
        await run.exit
        live.delete(run)
      }
    }
    const last = resumed!
    const guard = setTimeout(() => last.child.kill('SIGKILL'), 120_000)
    const code = await last.exit
    clearTimeout(guard)
    t.equal(code, 0, 'the last runner finishes', { output: last.output().slice(-2000) })
    await assertFinalState(t, ts, job, expectedState(gen))
  }
  faultTest(t, `lease (${name}) - a runner SIGKILLed and started again at once through a shell restores the latest checkpoint; exact final state`, body, [
    { mutation: TAKEOVER_REFUSED, because: /is not refused \(found .*JobAlreadyRunningError: job 'resume-[a-z]+' is already running on host/ },
  ])
}

t.test('lease (embedded) - weir snapshots and weir state on a missing folder create nothing', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'weir-readonly-'))
  t.teardown(() => rmSync(parent, { recursive: true, force: true }))
  const dir = join(parent, 'snapshots')
  const listed = await weir(['snapshots', 'orders', '--store-dir', dir])
  t.equal(listed.code, 1, listed.output)
  t.match(listed.output, /job orders has no snapshots in embedded\(/, 'says there is nothing to list')
  const state = await weir(['state', 'orders', 'count', 'sum', '--store-dir', dir])
  t.equal(state.code, 1)
  t.match(state.output, /job orders has no (completed )?snapshots?/)
  t.notOk(existsSync(dir), 'the folder was not created')
})

t.test('lease (postgres) - weir snapshots and weir state on a missing schema create nothing', async (t) => {
  const schema = `weir_readonly_${process.pid}`
  const client = await pgClient()
  t.teardown(async () => {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await client.end()
  })
  const listed = await weir(['snapshots', 'orders', '--store', PG_URL, '--pg-schema', schema])
  t.equal(listed.code, 1, listed.output)
  t.match(listed.output, /job orders has no snapshots in postgres\(/, 'says there is nothing to list')
  const state = await weir(['state', 'orders', 'count', 'sum', '--store', PG_URL, '--pg-schema', schema])
  t.equal(state.code, 1)
  t.match(state.output, /job orders has no (completed )?snapshots?/)
  const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
  t.equal(rows.length, 0, 'the schema was not created')
})
