/**
 * Run options are resolved once, when the job is started: a mistake fails at once with an error
 * naming the option, is terminal (never retried), and nothing runs or is written.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { EmbeddedStore, generatorSource, InvalidOptionError, job, startJob, UnknownOptionError, type RunOptions } from '../../index.ts'
import { resolveRunOptions, resolveTuning } from '../../supervisor/run-options.ts'

const counter = () =>
  job('options-job')
    .source('in', generatorSource({ records: 100, keys: 4 }))
    .keyBy((r) => r.key)
    .process('p', {}, () => {}).job

t.test('run options - tuning batchSize 1.5 fails at once in startJob, terminal, before the store is touched', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-options-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = new EmbeddedStore({ dir: join(dir, 'snapshots') })
  let err: unknown
  try {
    startJob(counter(), { store, tuning: { batchSize: 1.5 }, logLevel: 'silent' })
  } catch (e) {
    err = e
  }
  t.ok(err instanceof InvalidOptionError, 'thrown by startJob itself, synchronously')
  t.equal((err as Error).message, 'option tuning.batchSize: expected an integer from 1 to 1048576, got 1.5')
  t.equal((err as InvalidOptionError).retryable, false, 'terminal: the restart strategy never retries it')
  t.same(readdirSync(dir), [], 'the store was not opened: no folder made')
})

t.test('run options - every bad value is named', async (t) => {
  const cases: [RunOptions, string, string][] = [
    [{ tuning: { channelCapacity: 0 } }, 'tuning.channelCapacity', 'an integer from 1 to 1048576'],
    [{ tuning: { batchSize: 2 ** 40 } }, 'tuning.batchSize', 'an integer from 1 to 1048576'],
    [{ tuning: { sliceMs: 0 } }, 'tuning.sliceMs', 'an integer number of milliseconds from 1 to 60000'],
    [{ tuning: { sliceMs: Number.NaN } }, 'tuning.sliceMs', 'an integer number of milliseconds from 1 to 60000'],
    [{ progressIntervalMs: -1 }, 'progressIntervalMs', 'an integer number of milliseconds from 0 to 2147483647'],
    [{ progressIntervalMs: 1e12 }, 'progressIntervalMs', 'an integer number of milliseconds from 0 to 2147483647'],
    [{ restore: 1.5 as unknown as number }, 'restore', "'latest', 'none' or a snapshot id"],
    [{ logLevel: 'loud' as unknown as 'info' }, 'logLevel', 'one of debug, info, warn, error, silent'],
    [{ checkpoints: { intervalMs: 100, timeoutMs: 1e12 } }, 'checkpoints.timeoutMs', 'an integer number of milliseconds from 1 to 2147483647'],
    [{ restart: { type: 'fixed-delay', delayMs: 2 ** 31 } }, 'restart.delayMs', 'a number of milliseconds from 0 to 2147483647'],
  ]
  for (const [options, option, expected] of cases) {
    t.throws(() => resolveRunOptions(options), { name: 'InvalidOptionError', option, expected }, `${option} is rejected`)
  }
})

t.test('run options - unknown keys are named, at the top and in tuning', async (t) => {
  t.throws(() => resolveRunOptions({ checkpoint: { intervalMs: 100 } }), new UnknownOptionError('checkpoint', ['store', 'checkpoints', 'restart', 'restore', 'logger', 'logLevel', 'progressIntervalMs', 'tuning']))
  t.throws(() => resolveTuning({ batch: 10 }), new UnknownOptionError('tuning.batch', ['batchSize', 'channelCapacity', 'sliceMs']))
  t.throws(() => resolveTuning([]), { name: 'InvalidOptionError', option: 'tuning', expected: 'an object' })
})

t.test('run options - defaults are filled in once', async (t) => {
  const r = resolveRunOptions({ tuning: { batchSize: 64 } })
  t.same(r.tuning, { batchSize: 64, channelCapacity: 8, sliceMs: 5 })
  t.equal(r.restore, 'none')
  t.equal(r.logLevel, 'info')
  t.equal(r.progressIntervalMs, 2000)
  t.equal(r.checkpoints, undefined)
  t.equal(r.restart.type, 'exponential-backoff')
})

t.test('cli - a duration flag above 2^31-1 ms is a usage mistake naming the flag (exit 2), nothing runs', async (t) => {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const dir = mkdtempSync(join(tmpdir(), 'weir-cli-durations-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = join(dir, 'snapshots')
  const r = spawnSync(process.execPath, [join(root, 'bin/weir.js'), 'run', join(root, 'examples/payments/job.ts'), '--checkpoint-interval', '100', '--checkpoint-timeout', '1e12', '--store-dir', store], {
    encoding: 'utf8',
    timeout: 30_000,
  })
  t.equal(r.status, 2)
  t.match(r.stderr, 'option --checkpoint-timeout: expected an integer number of milliseconds from 0 to 2147483647 (about 24.8 days, the longest a timer can wait), got 1000000000000')
  t.same(readdirSync(dir), [], 'no store folder was made')
})
