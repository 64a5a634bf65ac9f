/**
 * The `weir` command line: `weir run <job.ts>` runs a job in local mode; `weir state` prints the
 * keyed state of a completed snapshot; `weir snapshots` lists a job's snapshots.
 */
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { decodeKeyedChunk } from '../persistence/keyed-chunk.ts'
import { readSnapshotState } from '../persistence/snapshot-reader.ts'
import type { SnapshotInfo, SnapshotStore } from '../persistence/store.ts'
import { resolveCheckpointOptions, type CheckpointOptions, type ResolvedCheckpointOptions } from '../supervisor/checkpoint-options.ts'
import { formatBytes } from '../supervisor/checkpoint-coordinator.ts'
import { DEFAULT_SNAPSHOT_DIR, startJob } from '../supervisor/job-runner.ts'
import { InvalidOptionError, UnknownOptionError } from '../supervisor/errors.ts'
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../actors/runtime/logger.ts'
import type { RestartStrategyOptions } from '../supervisor/restart-strategy.ts'
import { NotFoundError } from './errors.ts'
import { int, loadJob, ms, signalExitCode, storeFrom, STORE_OPTIONS, UsageError } from './common.ts'
import { CLUSTER_USAGE, jobs, node, nodes, request } from './cluster.ts'
import { runWorkers } from './workers.ts'

const USAGE = `Usage:
  weir run <job.ts> [options]      run a job in this process (local mode)
  weir state <job> <operator> <state> [--snapshot id] [store options]
                                   print a keyed state of a completed snapshot as JSON lines
  weir snapshots <job> [store options]
                                   list a job's snapshots
  weir --version                   print Weir's version

Run options:
  --checkpoint-interval <ms>       take checkpoints every <ms> (default: off)
  --checkpoint-mode <mode>         exactly-once (default) | at-least-once
  --checkpoint-timeout <ms>        abort a checkpoint after <ms> (default 60000)
  --min-pause <ms>                 least pause between checkpoints (default 0)
  --max-concurrent <n>             checkpoints in flight at once (default 1)
  --tolerable-failures <n>         failed checkpoints in a row before failing over (default 0)
  --retained <n>                   completed checkpoints kept (default 2)
  --restore <latest|none|id>       where to start from (default none)
  --restart <strategy>             none | fixed-delay | exponential-backoff | failure-rate,
                                   or a JSON object such as '{"type":"fixed-delay","attempts":5}'
  --log-level <level>              debug | info (default) | warn | error | silent
  --workers <n>                    run as n nodes in worker threads of this process
                                   (checkpoints every 1000 ms unless set; no --restart)

Store options:
  --store <embedded|postgres-url>  where snapshots go (default embedded)
  --store-dir <dir>                folder of the embedded store (default ${DEFAULT_SNAPSHOT_DIR})
  --pg-schema <name>               Postgres schema (default weir)

Environment:
  WEIR_LEASE_TAKEOVER=refuse       refuse at once a job whose lease another runner still has,
                                   even one whose heartbeat stopped (default: wait for it)
`

const RUN_OPTIONS = {
  ...STORE_OPTIONS,
  'checkpoint-interval': { type: 'string' },
  'checkpoint-mode': { type: 'string' },
  'checkpoint-timeout': { type: 'string' },
  'min-pause': { type: 'string' },
  'max-concurrent': { type: 'string' },
  'tolerable-failures': { type: 'string' },
  retained: { type: 'string' },
  restore: { type: 'string' },
  restart: { type: 'string' },
  'log-level': { type: 'string' },
  workers: { type: 'string' },
} as const satisfies ParseArgsConfig['options']

/** `weir run --workers N`: checks the flags that apply, then runs the job's nodes on worker threads. */
async function runOnWorkers(file: string, workers: number, values: { restart?: string } & Parameters<typeof storeFrom>[0], checkpoints: CheckpointOptions | false, restore: 'latest' | 'none' | number, level: LogLevel, logger: Logger): Promise<number> {
  if (workers < 1) throw new UsageError('--workers must be at least 1')
  if (values.restart !== undefined) throw new UsageError('--restart does not apply with --workers: the workers recover a failed attempt from the last checkpoint, at most 20 times in a row')
  let resolved: ResolvedCheckpointOptions
  try {
    // The workers recover and rescale through checkpoints: they always take them (every second unless told).
    resolved = resolveCheckpointOptions(checkpoints === false ? { intervalMs: 1000 } : checkpoints)
  } catch (err) {
    throw asUsageError(err)
  }
  return await runWorkers(file, { workers, store: storeFrom(values), checkpoints: resolved, restore, level, logger })
}

/** The flag that sets a `startJob` option, to name it in a usage error. */
const FLAG_OF_OPTION: Record<string, string> = {
  'checkpoints.intervalMs': 'checkpoint-interval',
  'checkpoints.mode': 'checkpoint-mode',
  'checkpoints.timeoutMs': 'checkpoint-timeout',
  'checkpoints.minPauseMs': 'min-pause',
  'checkpoints.maxConcurrent': 'max-concurrent',
  'checkpoints.tolerableFailures': 'tolerable-failures',
  'checkpoints.retained': 'retained',
  restore: 'restore',
}

/** Weir's version, from the package.json beside the sources (`cli/`) or the build (`dist/cli/`). */
function version(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'weir' && pkg.version !== undefined) return pkg.version
    } catch {
      // not this one: try the next folder up
    }
  }
  return 'unknown'
}

/** `weir ... | head -1`: a reader that goes away ends the output quietly, as for any Unix tool. */
function quietOnClosedPipe(): void {
  if (process.stdout.listeners('error').includes(onStdoutError)) return
  process.stdout.on('error', onStdoutError)
}

function onStdoutError(err: Error & { code?: string }): void {
  if (err.code !== 'EPIPE') throw err
  process.exit(0)
}

function restartFrom(value: string | undefined): RestartStrategyOptions | undefined {
  if (value === undefined) return undefined
  if (value.startsWith('{')) {
    try {
      return JSON.parse(value) as RestartStrategyOptions
    } catch (err) {
      throw new UsageError(`--restart JSON does not parse: ${(err as Error).message}`)
    }
  }
  return { type: value } as RestartStrategyOptions
}

/** A run option's error, said as the flag that set it (a usage mistake); anything else as it is. */
function asUsageError(err: unknown): unknown {
  if (err instanceof InvalidOptionError) {
    const flag = err.option.startsWith('restart') ? 'restart' : FLAG_OF_OPTION[err.option]
    return new UsageError(flag === undefined ? err.message : `--${flag}: expected ${err.expected}, got ${JSON.stringify(err.value)}`)
  }
  if (err instanceof UnknownOptionError && err.option.startsWith('restart')) return new UsageError(`--restart: ${err.message}`)
  return err
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: RUN_OPTIONS, allowPositionals: true, strict: true })
  if (values.help === true) {
    process.stdout.write(USAGE)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('weir run needs exactly one job file')
  const level = (values['log-level'] ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  const restoreArg = values.restore ?? 'none'
  const restore = restoreArg === 'latest' || restoreArg === 'none' ? restoreArg : int('restore', restoreArg)!
  const interval = ms('checkpoint-interval', values['checkpoint-interval'])
  let checkpoints: CheckpointOptions | false = false
  if (interval !== undefined) {
    checkpoints = { intervalMs: interval }
    const extra: Record<string, unknown> = {
      mode: values['checkpoint-mode'],
      timeoutMs: ms('checkpoint-timeout', values['checkpoint-timeout']),
      minPauseMs: ms('min-pause', values['min-pause']),
      maxConcurrent: int('max-concurrent', values['max-concurrent']),
      tolerableFailures: int('tolerable-failures', values['tolerable-failures']),
      retained: int('retained', values.retained),
    }
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) (checkpoints as unknown as Record<string, unknown>)[k] = v
  } else if (values['checkpoint-mode'] !== undefined) {
    throw new UsageError('--checkpoint-mode needs --checkpoint-interval')
  }
  const logger = createLogger({ level })
  const workers = int('workers', values.workers)
  if (workers !== undefined) return await runOnWorkers(positionals[0]!, workers, values, checkpoints, restore, level, logger)
  const definition = await loadJob(positionals[0]!)
  const store = storeFrom(values)
  const restart = restartFrom(values.restart)
  let handle: ReturnType<typeof startJob>
  try {
    handle = startJob(definition, { store, checkpoints, restore, logger, ...(restart === undefined ? {} : { restart }) })
  } catch (err) {
    throw asUsageError(err)
  }
  let signaled: NodeJS.Signals | undefined
  const stop = (signal: NodeJS.Signals) => {
    // A second signal: the user does not want to wait for the graceful stop.
    if (signaled !== undefined) process.exit(signalExitCode(signal))
    signaled = signal
    logger.warn(`${signal}: canceling the job (send it again to exit at once)`)
    void handle.cancel()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    const result = await handle.done
    const last = result.lastCheckpoint
    logger.info(`job ${result.status}`, {
      job: result.job,
      attempts: result.attempts,
      checkpoints: result.checkpointsCompleted,
      lastCheckpoint: last === undefined ? undefined : `${last.id} (${formatBytes(last.sizeBytes ?? 0)})`,
    })
    return signaled === undefined ? 0 : signalExitCode(signaled)
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    await store.close()
  }
}

async function state(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { ...STORE_OPTIONS, snapshot: { type: 'string' } }, allowPositionals: true, strict: true })
  if (positionals.length !== 3) throw new UsageError('weir state needs <job> <operator> <state>')
  const [job, operator, name] = positionals as [string, string, string]
  const store = storeFrom(values, true)
  try {
    await store.open()
    const snapshot = await completedSnapshot(store, job, int('snapshot', values.snapshot))
    const operators = snapshot.layout.operators.map((o) => o.uid)
    if (!operators.includes(operator)) {
      throw new NotFoundError(`snapshot ${snapshot.id} of job ${job} has no operator ${JSON.stringify(operator)}; its operators are ${operators.join(', ')}`, job)
    }
    const entries = await readSnapshotState(store, job, operator, name, snapshot.id)
    if (entries.size === 0) await expectState(store, snapshot, operator, name)
    let out = ''
    for (const [key, value] of entries) out += JSON.stringify({ key, value }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v)) + '\n'
    process.stdout.write(out)
    return 0
  } finally {
    await store.close()
  }
}

/** The completed snapshot `id` of `job`, or its latest; a clear error naming what exists if there is none. */
async function completedSnapshot(store: SnapshotStore, job: string, id: number | undefined): Promise<SnapshotInfo> {
  const snapshot = id === undefined ? await store.latestCompleted(job) : await store.getSnapshot(job, id)
  if (snapshot?.status === 'completed') return snapshot
  const all = await store.listSnapshots(job)
  if (all.length === 0) throw new NotFoundError(`job ${job} has no snapshots in ${store.description}`, job)
  const has = `the job has snapshots ${all.map((s) => `${s.id} (${s.status})`).join(', ')}`
  if (id === undefined) throw new NotFoundError(`job ${job} has no completed snapshot; ${has}`, job)
  throw new NotFoundError(snapshot === undefined ? `no snapshot ${id} of job ${job}; ${has}` : `snapshot ${id} of job ${job} is ${snapshot.status}, not completed; ${has}`, job)
}

/** An operator's state that came back empty: fine if the snapshot has it, an error naming the states it has if not. */
async function expectState(store: SnapshotStore, snapshot: SnapshotInfo, operator: string, name: string): Promise<void> {
  const names = new Set<string>()
  for (const chunk of await store.readChunks(snapshot.job, snapshot.id, { operatorUid: operator, kind: 'keyed' })) {
    for (const s of decodeKeyedChunk(chunk.data)) names.add(s.name)
  }
  if (names.has(name)) return
  const has = names.size === 0 ? 'it has no keyed state there' : `its keyed states are ${[...names].join(', ')}`
  throw new NotFoundError(`operator ${operator} has no keyed state ${JSON.stringify(name)} in snapshot ${snapshot.id} of job ${snapshot.job}; ${has}`, snapshot.job)
}

async function snapshots(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: STORE_OPTIONS, allowPositionals: true, strict: true })
  if (positionals.length !== 1) throw new UsageError('weir snapshots needs <job>')
  const store = storeFrom(values, true)
  try {
    await store.open()
    const job = positionals[0]!
    const all = await store.listSnapshots(job)
    if (all.length === 0) throw new NotFoundError(`job ${job} has no snapshots in ${store.description}`, job)
    for (const s of all) {
      process.stdout.write(`${s.id}\t${s.kind}\t${s.status}\t${formatBytes(s.sizeBytes ?? 0)}\t${new Date(s.triggeredAt).toISOString()}${s.reason ? `\t${s.reason}` : ''}\n`)
    }
    return 0
  } finally {
    await store.close()
  }
}

/** Runs the command line; returns the exit code (0 ok, 1 the job or store failed, 2 a usage mistake). */
export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv
  quietOnClosedPipe()
  try {
    if (verb === '--version' || verb === '-v' || verb === 'version') {
      process.stdout.write(`weir ${version()}\n`)
      return 0
    }
    if (verb === 'run') return await run(rest)
    if (verb === 'state') return await state(rest)
    if (verb === 'snapshots') return await snapshots(rest)
    if (verb === 'node') return await node(rest)
    if (verb === 'nodes') return await nodes(rest)
    if (verb === 'jobs') return await jobs(rest)
    if (verb === 'status' || verb === 'cancel') return await request(verb, rest)
    if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
      process.stdout.write(`${USAGE}\n${CLUSTER_USAGE}`)
      return verb === undefined ? 2 : 0
    }
    throw new UsageError(`unknown command ${JSON.stringify(verb)}`)
  } catch (err) {
    const e = err as Error & { code?: string }
    if (err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`weir: ${e.message}\n\n${USAGE}`)
      return 2
    }
    process.stderr.write(err instanceof NotFoundError ? `weir: ${e.message}\n` : `weir: ${e.name ?? 'Error'}: ${e.message}\n`)
    if (e.cause instanceof Error) process.stderr.write(`  cause: ${e.cause.message}\n`)
    if (e.code === 'ERR_REQUIRE_CYCLE_MODULE' || /Cannot require\(\) ES Module/.test(e.message)) {
      process.stderr.write('  hint: job files are ES modules; put them in a package with "type": "module", or name them .mts\n')
    }
    return 1
  }
}
