/**
 * The `weir` command line: `weir run <job.ts>` runs a job in local mode; `weir state` prints the
 * keyed state of a completed snapshot; `weir snapshots` lists a job's snapshots.
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { JobBuilder } from '../actors/job.ts'
import { EmbeddedStore } from '../persistence/embedded-store.ts'
import { PostgresStore } from '../persistence/postgres-store.ts'
import { readSnapshotState } from '../persistence/snapshot-reader.ts'
import type { SnapshotStore } from '../persistence/store.ts'
import type { CheckpointOptions } from '../supervisor/checkpoint-options.ts'
import { formatBytes } from '../supervisor/checkpoint-coordinator.ts'
import { DEFAULT_SNAPSHOT_DIR, startJob } from '../supervisor/job-runner.ts'
import { createLogger, LOG_LEVELS, type LogLevel } from '../supervisor/logger.ts'
import type { RestartStrategyOptions } from '../supervisor/restart-strategy.ts'

const USAGE = `Usage:
  weir run <job.ts> [options]      run a job in this process (local mode)
  weir state <job> <operator> <state> [--snapshot id] [store options]
                                   print a keyed state of a completed snapshot as JSON lines
  weir snapshots <job> [store options]
                                   list a job's snapshots

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

Store options:
  --store <embedded|postgres-url>  where snapshots go (default embedded)
  --store-dir <dir>                folder of the embedded store (default ${DEFAULT_SNAPSHOT_DIR})
  --pg-schema <name>               Postgres schema (default weir)
`

const STORE_OPTIONS = {
  store: { type: 'string' },
  'store-dir': { type: 'string' },
  'pg-schema': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

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
} as const satisfies ParseArgsConfig['options']

/** A mistake on the command line: print it with the usage, exit 2. */
class UsageError extends Error {
  override readonly name = 'UsageError'
}

function int(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} needs a non-negative integer, got ${JSON.stringify(value)}`)
  return n
}

function storeFrom(values: { store?: string; 'store-dir'?: string; 'pg-schema'?: string }): SnapshotStore {
  const store = values.store ?? 'embedded'
  if (store === 'embedded') return new EmbeddedStore({ dir: values['store-dir'] ?? DEFAULT_SNAPSHOT_DIR })
  if (/^postgres(ql)?:\/\//.test(store)) {
    return new PostgresStore({ connectionString: store, ...(values['pg-schema'] === undefined ? {} : { schema: values['pg-schema'] }) })
  }
  throw new UsageError(`--store must be "embedded" or a postgres:// URL, got ${JSON.stringify(store)}`)
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

async function loadJob(file: string): Promise<JobBuilder> {
  const mod = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown }
  const def = mod.default
  if (!(def instanceof JobBuilder) && typeof (def as { graph?: unknown })?.graph !== 'function') {
    throw new UsageError(`${file} must export a job as its default export (export default job('name')...), found ${def === undefined ? 'no default export' : typeof def}`)
  }
  return def as JobBuilder
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
  const interval = int('checkpoint-interval', values['checkpoint-interval'])
  let checkpoints: CheckpointOptions | false = false
  if (interval !== undefined) {
    checkpoints = { intervalMs: interval }
    const extra: Record<string, unknown> = {
      mode: values['checkpoint-mode'],
      timeoutMs: int('checkpoint-timeout', values['checkpoint-timeout']),
      minPauseMs: int('min-pause', values['min-pause']),
      maxConcurrent: int('max-concurrent', values['max-concurrent']),
      tolerableFailures: int('tolerable-failures', values['tolerable-failures']),
      retained: int('retained', values.retained),
    }
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) (checkpoints as unknown as Record<string, unknown>)[k] = v
  } else if (values['checkpoint-mode'] !== undefined) {
    throw new UsageError('--checkpoint-mode needs --checkpoint-interval')
  }
  const logger = createLogger({ level })
  const definition = await loadJob(positionals[0]!)
  const store = storeFrom(values)
  const restart = restartFrom(values.restart)
  const handle = startJob(definition, { store, checkpoints, restore, logger, ...(restart === undefined ? {} : { restart }) })
  const stop = () => void handle.cancel()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    const result = await handle.done
    const last = result.lastCheckpoint
    logger.info(`job ${result.status}`, {
      job: result.job,
      attempts: result.attempts,
      checkpoints: result.checkpointsCompleted,
      lastCheckpoint: last === undefined ? undefined : `${last.id} (${formatBytes(last.sizeBytes ?? 0)})`,
    })
    return 0
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
  const store = storeFrom(values)
  try {
    await store.open()
    const entries = await readSnapshotState(store, job, operator, name, int('snapshot', values.snapshot))
    let out = ''
    for (const [key, value] of entries) out += JSON.stringify({ key, value }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v)) + '\n'
    process.stdout.write(out)
    return 0
  } finally {
    await store.close()
  }
}

async function snapshots(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: STORE_OPTIONS, allowPositionals: true, strict: true })
  if (positionals.length !== 1) throw new UsageError('weir snapshots needs <job>')
  const store = storeFrom(values)
  try {
    await store.open()
    for (const s of await store.listSnapshots(positionals[0]!)) {
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
  try {
    if (verb === 'run') return await run(rest)
    if (verb === 'state') return await state(rest)
    if (verb === 'snapshots') return await snapshots(rest)
    if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
      process.stdout.write(USAGE)
      return verb === undefined ? 2 : 0
    }
    throw new UsageError(`unknown command ${JSON.stringify(verb)}`)
  } catch (err) {
    const e = err as Error & { code?: string }
    if (err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`weir: ${e.message}\n\n${USAGE}`)
      return 2
    }
    process.stderr.write(`weir: ${e.name ?? 'Error'}: ${e.message}\n`)
    if (e.cause instanceof Error) process.stderr.write(`  cause: ${e.cause.message}\n`)
    if (e.code === 'ERR_REQUIRE_CYCLE_MODULE' || /Cannot require\(\) ES Module/.test(e.message)) {
      process.stderr.write('  hint: job files are ES modules; put them in a package with "type": "module", or name them .mts\n')
    }
    return 1
  }
}
