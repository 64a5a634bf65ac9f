/**
 * Checkpoint options (docs/architecture.md section 6): written once with their defaults, validated when
 * resolved, durations in milliseconds.
 */
import type { CheckpointMode } from '../actors/runtime/alignment.ts'
import { checkDuration, checkInteger } from '../persistence/option-checks.ts'
import { InvalidOptionError, rejectUnknownKeys } from './errors.ts'

/** How and how often checkpoints are taken. */
export interface CheckpointOptions {
  /** Time between the start of two checkpoints. */
  intervalMs: number
  /**
   * `exactly-once` aligns barriers so state reflects each record once; `at-least-once` skips
   * alignment (no held inputs) and may count records twice after a restore.
   * @default 'exactly-once'
   */
  mode?: CheckpointMode
  /** A checkpoint not completed in this time is aborted. @default 60_000 */
  timeoutMs?: number
  /** Least time between the end of one checkpoint and the start of the next. @default 0 */
  minPauseMs?: number
  /** Checkpoints in flight at once. @default 1 */
  maxConcurrent?: number
  /** Checkpoints that may fail in a row before the job fails over. @default 0 */
  tolerableFailures?: number
  /**
   * Completed checkpoints kept; older ones are discarded. Two by default, so a restore has an
   * older one to fall back to if the newest fails verification.
   * @default 2
   */
  retained?: number
}

export type ResolvedCheckpointOptions = Required<CheckpointOptions>

const DEFAULTS: Omit<ResolvedCheckpointOptions, 'intervalMs'> = {
  mode: 'exactly-once',
  timeoutMs: 60_000,
  minPauseMs: 0,
  maxConcurrent: 1,
  tolerableFailures: 0,
  retained: 2,
}

const KEYS = ['intervalMs', 'mode', 'timeoutMs', 'minPauseMs', 'maxConcurrent', 'tolerableFailures', 'retained']

function int(name: string, value: unknown, min: number): number {
  return checkInteger(`checkpoints.${name}`, value, min)
}

function ms(name: string, value: unknown, min: number): number {
  return checkDuration(`checkpoints.${name}`, value, { min })
}

/**
 * Fills in defaults and rejects bad values.
 * @example
 * resolveCheckpointOptions({ intervalMs: 1000 }) // exactly-once, 60 s timeout, 2 retained
 */
export function resolveCheckpointOptions(options: unknown): ResolvedCheckpointOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('checkpoints', 'an object or false', options)
  rejectUnknownKeys('checkpoints', options, KEYS)
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Record<string, unknown>
  if (o.mode !== 'exactly-once' && o.mode !== 'at-least-once') throw new InvalidOptionError('checkpoints.mode', "'exactly-once' or 'at-least-once'", o.mode)
  return {
    intervalMs: ms('intervalMs', o.intervalMs, 1),
    mode: o.mode,
    timeoutMs: ms('timeoutMs', o.timeoutMs, 1),
    minPauseMs: ms('minPauseMs', o.minPauseMs, 0),
    maxConcurrent: int('maxConcurrent', o.maxConcurrent, 1),
    tolerableFailures: int('tolerableFailures', o.tolerableFailures, 0),
    retained: int('retained', o.retained, 1),
  }
}
