/**
 * Restart strategies (docs/architecture.md section 4): when a job fails, whether and after how long the supervisor
 * restarts it. Pure: time and randomness come in as arguments, so every decision is reproducible
 * and the waiting itself belongs to `restart-machine.ts`.
 */

import { isDuration, MAX_DURATION_MS } from '../persistence/option-checks.ts'
import { InvalidOptionError, rejectUnknownKeys } from './errors.ts'

/** Never restart: the first failure fails the job. */
export interface NoRestartOptions {
  readonly type: 'none'
}

/** Restart a fixed number of times, waiting the same delay before each restart. */
export interface FixedDelayOptions {
  readonly type: 'fixed-delay'
  /**
   * Restarts allowed over the job's life; the failure after the last one fails the job.
   * `0` never restarts.
   * @default 3
   */
  readonly attempts?: number
  /**
   * Wait before each restart, in milliseconds.
   * @default 1000
   */
  readonly delayMs?: number
}

/**
 * Wait longer after each failure in a row, so a job that keeps crashing does not hammer its
 * sources and sinks, and start again from the shortest wait once the job has been quiet a while.
 */
export interface ExponentialBackoffOptions {
  readonly type: 'exponential-backoff'
  /**
   * Wait before the first restart, in milliseconds. Must be positive.
   * @default 100
   */
  readonly initialMs?: number
  /**
   * Longest wait before jitter, in milliseconds. Must not be below `initialMs`; when omitted
   * with an `initialMs` above the default, it is `initialMs`.
   * @default 60_000
   */
  readonly maxMs?: number
  /**
   * Factor applied to the wait after each failure. At least 1 (1 is a fixed delay).
   * @default 2
   */
  readonly multiplier?: number
  /**
   * Fraction 0..1 by which each wait is spread at random, ±`jitter` × wait, so that many jobs
   * failing together (a shared database going down) do not all come back at the same instant.
   * A spread wait can exceed `maxMs` by up to `jitter` × `maxMs`.
   * @default 0.1
   */
  readonly jitter?: number
  /**
   * A failure arriving more than this many milliseconds after the previous one starts the
   * backoff again from `initialMs`, and gives back all `attempts`. `Infinity` never resets.
   * @default 3_600_000
   */
  readonly resetAfterMs?: number
  /**
   * Restarts allowed between two resets; the failure after the last one fails the job.
   * @default Infinity
   */
  readonly attempts?: number
}

/** Restart as long as failures stay rare: give up when too many fall within a sliding window. */
export interface FailureRateOptions {
  readonly type: 'failure-rate'
  /**
   * Failures tolerated within any `intervalMs` window; one more fails the job.
   * @default 3
   */
  readonly maxFailures?: number
  /**
   * Length of the sliding window, in milliseconds.
   * @default 300_000
   */
  readonly intervalMs?: number
  /**
   * Wait before each restart, in milliseconds.
   * @default 1000
   */
  readonly delayMs?: number
}

/** How a failed job is restarted, as the user writes it. Omitted fields take their `@default`. */
export type RestartStrategyOptions =
  | NoRestartOptions
  | FixedDelayOptions
  | ExponentialBackoffOptions
  | FailureRateOptions

/** A strategy with every default filled in and every value checked. Durations in ms. */
export type ResolvedRestartStrategy =
  | { readonly type: 'none' }
  | { readonly type: 'fixed-delay'; readonly attempts: number; readonly delayMs: number }
  | {
      readonly type: 'exponential-backoff'
      readonly initialMs: number
      readonly maxMs: number
      readonly multiplier: number
      readonly jitter: number
      readonly resetAfterMs: number
      readonly attempts: number
    }
  | {
      readonly type: 'failure-rate'
      readonly maxFailures: number
      readonly intervalMs: number
      readonly delayMs: number
    }

export type RestartStrategyType = ResolvedRestartStrategy['type']

type Defaults<T extends ResolvedRestartStrategy> = Omit<T, 'type'>
type Strategy<K extends RestartStrategyType> = Extract<ResolvedRestartStrategy, { type: K }>

// The one place the defaults live; the `@default` tags above document these values.
const DEFAULTS: {
  readonly [K in RestartStrategyType]: Defaults<Strategy<K>>
} = {
  none: {},
  'fixed-delay': { attempts: 3, delayMs: 1000 },
  'exponential-backoff': {
    initialMs: 100,
    maxMs: 60_000,
    multiplier: 2,
    jitter: 0.1,
    resetAfterMs: 3_600_000,
    attempts: Infinity,
  },
  'failure-rate': { maxFailures: 3, intervalMs: 300_000, delayMs: 1000 },
}

const TYPES = Object.keys(DEFAULTS) as readonly RestartStrategyType[]

/**
 * The strategy of a job that names none, as Flink does since 1.19: exponential backoff from 1 s
 * doubling up to 1 min, so a database that restarts (30 s or more) is waited for, with 10
 * restarts in a row (about 5 minutes of waiting) before a job that is broken for good fails.
 */
export const DEFAULT_RESTART_STRATEGY: ResolvedRestartStrategy = {
  type: 'exponential-backoff',
  initialMs: 1000,
  maxMs: 60_000,
  multiplier: 2,
  jitter: 0.1,
  resetAfterMs: 3_600_000,
  attempts: 10,
}

const PATH = 'restart'

/**
 * Checks a restart strategy as the user wrote it and fills in the defaults. A mistake (unknown
 * `type` or key, negative delay, `multiplier` below 1, `jitter` outside 0..1, `maxMs` below
 * `initialMs`) throws at once, naming the option, so the job never starts with a strategy that
 * cannot work. `undefined` means {@link DEFAULT_RESTART_STRATEGY}.
 *
 * @throws {InvalidOptionError} a value has the wrong type or is out of range.
 * @throws {UnknownOptionError} a key does not belong to the chosen `type` (often a typo).
 * @example
 * ```ts
 * const strategy = resolveRestartStrategy({ type: 'exponential-backoff', maxMs: 30_000 })
 * // { type: 'exponential-backoff', initialMs: 100, maxMs: 30000, multiplier: 2, jitter: 0.1,
 * //   resetAfterMs: 3600000, attempts: Infinity }
 *
 * resolveRestartStrategy({ type: 'fixed-delay', delay: 500 })
 * // throws UnknownOptionError: unknown option restart.delay; known options: type, attempts, delayMs
 * ```
 */
export function resolveRestartStrategy(options: unknown): ResolvedRestartStrategy {
  if (options === undefined) return DEFAULT_RESTART_STRATEGY
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(PATH, `an object with a type (${typeList()})`, options)
  }
  const given = options as Readonly<Record<string, unknown>>
  const type = given['type']
  if (typeof type !== 'string' || !(TYPES as readonly string[]).includes(type)) {
    throw new InvalidOptionError(`${PATH}.type`, `one of ${typeList()}`, type)
  }
  const known = ['type', ...Object.keys(DEFAULTS[type as RestartStrategyType])]
  rejectUnknownKeys(PATH, given, known)

  const read = (key: string, fallback: number, check: Check): number => {
    const value = given[key]
    if (value === undefined) return fallback
    if (typeof value !== 'number' || Number.isNaN(value) || !check.accepts(value)) {
      throw new InvalidOptionError(`${PATH}.${key}`, check.expected, value)
    }
    return value
  }

  switch (type as RestartStrategyType) {
    case 'none':
      return { type: 'none' }
    case 'fixed-delay': {
      const d = DEFAULTS['fixed-delay']
      return {
        type: 'fixed-delay',
        attempts: read('attempts', d.attempts, count),
        delayMs: read('delayMs', d.delayMs, duration),
      }
    }
    case 'exponential-backoff': {
      const d = DEFAULTS['exponential-backoff']
      const initialMs = read('initialMs', d.initialMs, positiveDuration)
      // A default maxMs below a user's large initialMs would be our mistake, not theirs: only an
      // explicit maxMs is held against initialMs.
      const maxMs = read('maxMs', Math.max(d.maxMs, initialMs), {
        expected: `a number of milliseconds from initialMs (${initialMs}) to ${MAX_DURATION_MS}`,
        accepts: (v) => isDuration(v, { min: initialMs, integer: false }),
      })
      return {
        type: 'exponential-backoff',
        initialMs,
        maxMs,
        multiplier: read('multiplier', d.multiplier, {
          expected: 'a finite number of at least 1',
          accepts: (v) => Number.isFinite(v) && v >= 1,
        }),
        jitter: read('jitter', d.jitter, {
          expected: 'a fraction between 0 and 1',
          accepts: (v) => v >= 0 && v <= 1,
        }),
        resetAfterMs: read('resetAfterMs', d.resetAfterMs, {
          expected: 'a positive number of milliseconds (Infinity never resets)',
          accepts: (v) => v > 0,
        }),
        attempts: read('attempts', d.attempts, countOrInfinity),
      }
    }
    case 'failure-rate': {
      const d = DEFAULTS['failure-rate']
      return {
        type: 'failure-rate',
        maxFailures: read('maxFailures', d.maxFailures, count),
        intervalMs: read('intervalMs', d.intervalMs, positiveDuration),
        delayMs: read('delayMs', d.delayMs, duration),
      }
    }
  }
}

interface Check {
  readonly expected: string
  readonly accepts: (value: number) => boolean
}

const count: Check = {
  expected: 'a non-negative integer',
  accepts: (v) => Number.isSafeInteger(v) && v >= 0,
}
const countOrInfinity: Check = {
  expected: 'a non-negative integer or Infinity',
  accepts: (v) => v === Infinity || count.accepts(v),
}
// Waits become timers, which cannot wait longer than MAX_DURATION_MS (checkDuration says so).
const duration: Check = {
  expected: `a number of milliseconds from 0 to ${MAX_DURATION_MS}`,
  accepts: (v) => isDuration(v, { integer: false }),
}
const positiveDuration: Check = {
  expected: `a positive number of milliseconds up to ${MAX_DURATION_MS}`,
  accepts: (v) => v > 0 && isDuration(v, { integer: false }),
}

function typeList(): string {
  return TYPES.map((t) => JSON.stringify(t)).join(', ')
}

/** One line for logs, e.g. `fixed-delay: up to 3 restarts, 1000 ms apart`. */
export function describeRestartStrategy(strategy: ResolvedRestartStrategy): string {
  switch (strategy.type) {
    case 'none':
      return 'none: never restarts'
    case 'fixed-delay':
      return `fixed-delay: up to ${restarts(strategy.attempts)}, ${strategy.delayMs} ms apart`
    case 'exponential-backoff': {
      const limit =
        strategy.attempts === Infinity ? 'unlimited restarts' : `up to ${restarts(strategy.attempts)}`
      const reset =
        strategy.resetAfterMs === Infinity
          ? 'never reset'
          : `reset after ${strategy.resetAfterMs} ms without failure`
      return (
        `exponential-backoff: ${strategy.initialMs} ms x${strategy.multiplier} up to ` +
        `${strategy.maxMs} ms, jitter ±${Math.round(strategy.jitter * 100)}%, ${reset}, ${limit}`
      )
    }
    case 'failure-rate':
      return (
        `failure-rate: up to ${strategy.maxFailures} failures per ${strategy.intervalMs} ms, ` +
        `${strategy.delayMs} ms apart`
      )
  }
}

function restarts(n: number): string {
  return `${n} ${n === 1 ? 'restart' : 'restarts'}`
}
