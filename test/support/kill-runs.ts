/**
 * The kill loop of the crash tests: `weir run` of a fixture job in a child process, killed with
 * SIGKILL a random moment after its first completed checkpoint, started again by the next run
 * (each at its own parallelism), until the last run finishes.
 *
 * The loop proves the restore, not only the end result (a job started from scratch each time
 * would end with the same state): every run after the first must restore the latest snapshot
 * completed before it started (read from the store, not from the log), and the last run must
 * read only the records after that snapshot's source offsets. Run under a {@link Mutation} (a
 * negative control) the same checks must fail.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { decodeOperatorChunk } from '../../actors/state/operator-state.ts'
import type { SnapshotStore } from '../../index.ts'
import type { Checks, Mutation } from './controls.ts'
import type { TestStore } from './stores.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface Run {
  child: ChildProcess
  exit: Promise<number | null>
  output: () => string
}

/** The arguments of `node` for a `weir run <jobFile>` that restores the latest snapshot (unless `mutation` says otherwise), checkpoints every `intervalMs`. */
export function weirRunArgs(jobFile: string, storeArgs: string[], intervalMs = 50, mutation?: Mutation): string[] {
  const args = ['bin/weir.js', 'run', jobFile, ...storeArgs, '--restore', mutation?.restore ?? 'latest', '--checkpoint-interval', String(intervalMs), '--log-level', 'info']
  if (mutation?.mode !== undefined) args.push('--checkpoint-mode', mutation.mode)
  return args
}

/** One `weir run <jobFile>` child (see {@link weirRunArgs}). */
export function startRun(jobFile: string, storeArgs: string[], env: Record<string, string>, intervalMs = 50, mutation?: Mutation): Run {
  return startChild(process.execPath, weirRunArgs(jobFile, storeArgs, intervalMs, mutation), env, mutation)
}

/** A child of `command` in the repository's folder, its output collected; the mutation's environment on top of `env`. */
export function startChild(command: string, args: string[], env: Record<string, string>, mutation?: Mutation): Run {
  let output = ''
  // It keeps NODE_V8_COVERAGE (c8 under npm test): the run that finishes writes its coverage; a run
  // killed with SIGKILL writes none, which is the price of killing it for real.
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env, ...mutation?.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exit, output: () => output }
}

/** Resolves true once `check` holds (polling every 20 ms), false after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 120_000): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

/** The id of the first snapshot a run's log says it restored (`restoring snapshot=N`). */
export function restoredId(output: string): number | undefined {
  const m = /restoring snapshot=(\d+)/.exec(output)
  return m === null ? undefined : Number(m[1])
}

/** Records through `operator` in the last progress line of a run's log (the one written when it finished). */
export function recordsThrough(output: string, operator: string): number | undefined {
  const all = [...output.matchAll(new RegExp(`progress .*\\b${operator}=(\\d+)`, 'g'))]
  return all.length === 0 ? undefined : Number(all[all.length - 1]![1])
}

/**
 * How many of a plain generator source's `records` are still to be read after snapshot `id`:
 * instance `i` of `p` reads the positions `seq % p === i`, from its offset on.
 */
export async function recordsLeftAfter(store: SnapshotStore, job: string, id: number, source: string, records: number): Promise<number> {
  const chunks = await store.readChunks(job, id, { operatorUid: source, kind: 'operator' })
  const p = chunks.length
  let left = 0
  for (const c of chunks) {
    const offset = decodeOperatorChunk(c.format, c.data).offset
    const from = typeof offset === 'number' ? offset : c.index
    if (from < records) left += Math.ceil((records - from) / p)
  }
  return left
}

/** The offset of a one-instance generator source in snapshot `id`: the records before it are in the snapshot's state. */
export async function generatorOffset(store: SnapshotStore, job: string, id: number, source = 'in'): Promise<number> {
  const chunks = await store.readChunks(job, id, { operatorUid: source, kind: 'operator' })
  if (chunks.length !== 1) throw new Error(`source ${source} has ${chunks.length} instances in snapshot ${id}; expected one`)
  const offset = decodeOperatorChunk(chunks[0]!.format, chunks[0]!.data).offset
  if (typeof offset !== 'number') throw new Error(`source ${source} has no offset in snapshot ${id}`)
  return offset
}

export interface KillPlan {
  jobFile: string
  store: TestStore
  job: string
  env: Record<string, string>
  /** Records the job's generator source `source` emits in all (it must not be rescaled between runs). */
  records: number
  /** The source whose offsets the last run must resume from. Default `in`. */
  source?: string
  /** WEIR_FIXTURE_PARALLELISM of each run killed part-way; a run that finishes first ends the loop. */
  killed: readonly string[]
  /** WEIR_FIXTURE_PARALLELISM of the run that goes to the end. */
  last: string
  /** Longest wait after a run's first checkpoint before it is killed. Default 400 ms. */
  killWithinMs?: number
  /** Checkpoint interval of each run. Default 50 ms. */
  intervalMs?: () => number
  /** More checks of each snapshot a run restores, e.g. that its state is exact for its offsets. */
  checkSnapshot?: (t: Checks, id: number) => Promise<void>
}

/**
 * Runs `plan.jobFile` once per entry of `plan.killed`, killing each run part-way, then once more
 * to the end. Asserts at least two kills, that each run restored the latest snapshot completed
 * before it started, that the last run read only what came after that snapshot's offsets, and
 * that it exits 0. Returns the last run.
 */
export async function killPartWayThenFinish(t: Checks, plan: KillPlan, mutation?: Mutation): Promise<Run> {
  const store = plan.store.store
  const source = plan.source ?? 'in'
  const interval = plan.intervalMs ?? (() => 50)
  const checked = new Set<number>()
  const live = new Set<Run>()
  t.teardown(() => {
    for (const run of live) run.child.kill('SIGKILL')
  })
  /** Starts run `n`, noting the snapshot it must restore: the latest completed one. */
  const start = async (n: number, parallelism: string) => {
    const latest = (await store.latestCompleted(plan.job))?.id
    if (latest !== undefined && !checked.has(latest)) {
      checked.add(latest)
      await plan.checkSnapshot?.(t, latest)
    }
    const run = startRun(plan.jobFile, plan.store.cliArgs, { ...plan.env, WEIR_FIXTURE_PARALLELISM: parallelism }, interval(), mutation)
    live.add(run)
    void run.exit.then(() => live.delete(run))
    return { run, latest, what: `run ${n} (parallelism ${parallelism})` }
  }
  const assertRestored = (what: string, output: string, latest: number | undefined) => {
    if (latest === undefined) t.equal(restoredId(output), undefined, `${what} starts from nothing: no snapshot was completed yet`)
    else t.equal(restoredId(output), latest, `${what} restored snapshot ${latest}, the latest completed when it started`)
  }

  let kills = 0
  for (let k = 0; k < plan.killed.length; k++) {
    const { run, latest, what } = await start(k + 1, plan.killed[k]!)
    const checkpointed = await Promise.race([waitFor(() => /checkpoint completed/.test(run.output())), run.exit.then(() => false)])
    const wait = Math.floor(Math.random() * (plan.killWithinMs ?? 400))
    if (checkpointed) await new Promise((r) => setTimeout(r, wait))
    run.child.kill('SIGKILL')
    const code = await run.exit
    assertRestored(what, run.output(), latest)
    if (code === 0) {
      t.comment(`${what} finished before the kill`)
      break
    }
    t.equal(code, null, `${what} was killed ${wait} ms after its first checkpoint`, { output: run.output().slice(-2000) })
    kills++
  }
  t.ok(kills >= 2, `the job was killed part-way at least twice (${kills})`)
  const { run: last, latest, what } = await start(kills + 1, plan.last)
  const left = latest === undefined ? plan.records : await recordsLeftAfter(store, plan.job, latest, source, plan.records)
  const guard = setTimeout(() => last.child.kill('SIGKILL'), 120_000)
  const code = await last.exit
  clearTimeout(guard)
  t.equal(code, 0, `the last run, ${what}, finishes`, { output: last.output().slice(-4000) })
  t.match(last.output(), /job finished/)
  assertRestored(`the last run, ${what},`, last.output(), latest)
  t.ok(latest !== undefined && left < plan.records, `checkpoints completed before the last run, so it had part of the input left (${left} of ${plan.records})`)
  t.equal(recordsThrough(last.output(), source), left, `the last run read the ${left} records after the restored offsets of ${source}, not the input from its start`)
  return last
}
