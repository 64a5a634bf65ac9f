/**
 * The options of a run, resolved once when the job is started: defaults filled in, every value
 * checked, so a mistake fails at once with an error naming the option (never deep inside an
 * attempt, where it would be retried). Errors of options are terminal.
 */
import type { InspectionEvent } from 'xstate'
import { systemClock, type Clock } from '../actors/time/clock.ts'
import { DEFAULT_TUNING, type ExecutorTuning } from '../actors/runtime/executor-options.ts'
import { checkBoolean, checkDuration, checkInteger, checkObject } from '../persistence/option-checks.ts'
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from './checkpoint-options.ts'
import { InvalidOptionError, rejectUnknownKeys } from './errors.ts'
import { LOG_LEVELS, type LogLevel } from '../actors/runtime/logger.ts'
import { resolveRestartStrategy, type ResolvedRestartStrategy } from './restart-strategy.ts'

/** Run options with every default applied; what the runner works from. */
export interface ResolvedRunOptions {
  checkpoints: ResolvedCheckpointOptions | undefined
  restart: ResolvedRestartStrategy
  restore: 'latest' | 'none' | number
  logLevel: LogLevel
  progressIntervalMs: number
  tuning: ExecutorTuning
  strictState: boolean
  watchdogMs: number
  clock: Clock
  inspect: ((event: InspectionEvent) => void) | undefined
}

/** Keys of `RunOptions`; `store` and `logger` are objects of their own and checked by them. */
export const RUN_OPTION_KEYS = ['store', 'checkpoints', 'restart', 'restore', 'logger', 'logLevel', 'progressIntervalMs', 'tuning', 'strictState', 'watchdogMs', 'clock', 'inspect']

const TUNING_KEYS = Object.keys(DEFAULT_TUNING)

/** Most records per batch and batches per channel: far beyond any useful value, far below overflow. */
const MAX_BATCH = 1 << 20

/**
 * Checks the options of `startJob` and fills in the defaults.
 * @throws {InvalidOptionError} a value has the wrong type or is out of range.
 * @throws {UnknownOptionError} a key that does not exist (often a typo).
 */
export function resolveRunOptions(options: unknown): ResolvedRunOptions {
  const o = checkObject('options', options ?? {})
  rejectUnknownKeys('', o, RUN_OPTION_KEYS)
  const restore = o['restore'] ?? 'none'
  if (restore !== 'latest' && restore !== 'none' && !(typeof restore === 'number' && Number.isSafeInteger(restore) && restore > 0)) {
    throw new InvalidOptionError('restore', "'latest', 'none' or a snapshot id", restore)
  }
  const logLevel = o['logLevel'] ?? 'info'
  if (!(LOG_LEVELS as readonly unknown[]).includes(logLevel)) throw new InvalidOptionError('logLevel', `one of ${LOG_LEVELS.join(', ')}`, logLevel)
  return {
    checkpoints: o['checkpoints'] === undefined || o['checkpoints'] === false ? undefined : resolveCheckpointOptions(o['checkpoints']),
    restart: resolveRestartStrategy(o['restart']),
    restore,
    logLevel: logLevel as LogLevel,
    progressIntervalMs: checkDuration('progressIntervalMs', o['progressIntervalMs'] ?? 2000),
    tuning: resolveTuning(o['tuning']),
    // The project's own tests turn strict state on for every job through the environment.
    strictState: checkBoolean('strictState', o['strictState'] ?? process.env['WEIR_STRICT_STATE'] === '1'),
    watchdogMs: checkDuration('watchdogMs', o['watchdogMs'] ?? 10_000),
    clock: resolveClock(o['clock']),
    inspect: resolveInspect(o['inspect']),
  }
}

/** Checks executor tuning: whole records and batches, a time slice in milliseconds. */
/** An XState inspector: a function, or an observer with `next` (as `createActor` takes it). */
function resolveInspect(inspect: unknown): ((event: InspectionEvent) => void) | undefined {
  if (inspect === undefined) return undefined
  if (typeof inspect === 'function') return inspect as (event: InspectionEvent) => void
  const next = (inspect as { next?: unknown } | null)?.next
  if (typeof next === 'function') return (event) => (next as (e: InspectionEvent) => void).call(inspect, event)
  throw new InvalidOptionError('inspect', 'a function or an observer with next(event), as XState takes them', inspect)
}

export function resolveTuning(tuning: unknown): ExecutorTuning {
  if (tuning === undefined) return { ...DEFAULT_TUNING }
  const given = checkObject('tuning', tuning)
  rejectUnknownKeys('tuning', given, TUNING_KEYS)
  const t = { ...DEFAULT_TUNING, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) } as Record<string, unknown>
  return {
    batchSize: checkInteger('tuning.batchSize', t['batchSize'], 1, MAX_BATCH),
    channelCapacity: checkInteger('tuning.channelCapacity', t['channelCapacity'], 1, MAX_BATCH),
    sliceMs: checkDuration('tuning.sliceMs', t['sliceMs'], { min: 1, max: 60_000 }),
  }
}

/** Checks `clock`: an object whose `now()` returns a finite number of ms. */
export function resolveClock(clock: unknown): Clock {
  if (clock === undefined) return systemClock
  if (typeof clock !== 'object' || clock === null || typeof (clock as { now?: unknown }).now !== 'function') {
    throw new InvalidOptionError('clock', 'an object with now(): number (e.g. systemClock)', clock)
  }
  const now = (clock as Clock).now()
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new InvalidOptionError('clock', 'a clock whose now() returns a finite number of ms', now)
  return clock as Clock
}
