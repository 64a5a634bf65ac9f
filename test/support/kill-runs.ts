/**
 * The kill loop of the crash tests: `weir run` of a fixture job in a child process, killed with
 * SIGKILL a random moment after its first completed checkpoint, restored from the latest
 * checkpoint by the next run (each at its own parallelism), until the last run finishes.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const { NODE_V8_COVERAGE: _coverage, ...parentEnv } = process.env

/** One `weir run <jobFile> --restore latest` child with checkpoints every `intervalMs` (default 50). */
export function startRun(jobFile: string, storeArgs: string[], env: Record<string, string>, intervalMs = 50): { child: ChildProcess; exit: Promise<number | null>; output: () => string } {
  let output = ''
  const child = spawn(process.execPath, ['bin/weir.js', 'run', jobFile, ...storeArgs, '--restore', 'latest', '--checkpoint-interval', String(intervalMs), '--log-level', 'info'], {
    cwd: root,
    env: { ...parentEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
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

/**
 * Runs `jobFile` once per entry of `parallelisms` (passed as WEIR_FIXTURE_PARALLELISM), killing
 * each run part-way, then once more at `lastParallelism` to the end; asserts at least two kills
 * and a last run that exits 0.
 */
export async function killPartWayThenFinish(t: Test, jobFile: string, storeArgs: string[], env: Record<string, string>, parallelisms: readonly string[], lastParallelism: string): Promise<void> {
  let kills = 0
  for (let kill = 0; kill < parallelisms.length; kill++) {
    const run = startRun(jobFile, storeArgs, { ...env, WEIR_FIXTURE_PARALLELISM: parallelisms[kill]! })
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
  const last = startRun(jobFile, storeArgs, { ...env, WEIR_FIXTURE_PARALLELISM: lastParallelism })
  t.equal(await last.exit, 0, 'the last run finishes', { output: last.output() })
}
