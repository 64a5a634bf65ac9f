/**
 * The checks every options object is resolved with, written once for all layers (the stores sit
 * lowest, so the runtime and the CLI import them from here): durations, counts and unknown keys.
 * Each throws an {@link InvalidOptionError} or {@link UnknownOptionError} naming the option.
 */
import { InvalidOptionError, UnknownOptionError } from './errors.ts'

/**
 * The longest duration a timer can wait: Node runs a `setTimeout` of more than 2^31-1 ms
 * (about 24.8 days) after 1 ms instead, so a larger value would fire at once, not late.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1

/** How a duration is checked. */
export interface DurationCheck {
  /** The least value allowed. @default 0 */
  readonly min?: number
  /** The most allowed; never above {@link MAX_DURATION_MS}. @default MAX_DURATION_MS */
  readonly max?: number
  /** Whether fractions of a millisecond are refused. @default true */
  readonly integer?: boolean
}

/**
 * Checks a duration in milliseconds: a finite number (an integer unless `integer: false`) from
 * `min` to `max`, which is at most {@link MAX_DURATION_MS}. Returns it unchanged.
 *
 * @throws {InvalidOptionError} naming `option`, the range and the value.
 * @example
 * checkDuration('checkpoints.timeoutMs', 1e12, { min: 1 })
 * // throws: option checkpoints.timeoutMs: expected an integer number of milliseconds from 1
 * //   to 2147483647 (about 24.8 days, the longest a timer can wait), got 1000000000000
 */
export function checkDuration(option: string, value: unknown, check: DurationCheck = {}): number {
  const min = check.min ?? 0
  const max = Math.min(check.max ?? MAX_DURATION_MS, MAX_DURATION_MS)
  const integer = check.integer ?? true
  if (!isDuration(value, { min, max, integer })) {
    const limit = max === MAX_DURATION_MS ? `${max} (about 24.8 days, the longest a timer can wait)` : String(max)
    throw new InvalidOptionError(option, `${integer ? 'an integer' : 'a'} number of milliseconds from ${min} to ${limit}`, value)
  }
  return value
}

/** Whether `value` passes {@link checkDuration} with the same `check`. */
export function isDuration(value: unknown, check: DurationCheck = {}): value is number {
  const max = Math.min(check.max ?? MAX_DURATION_MS, MAX_DURATION_MS)
  return (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (check.integer === false || Number.isInteger(value)) &&
    value >= (check.min ?? 0) &&
    value <= max
  )
}

/**
 * Checks a count: an integer from `min` to `max` (default: the largest safe integer).
 * @throws {InvalidOptionError} naming `option`, the range and the value.
 */
export function checkInteger(option: string, value: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`
    throw new InvalidOptionError(option, `an integer ${range}`, value)
  }
  return value
}

/** Rejects keys of `given` that are not in `known`, naming the first stranger (`path.key`). */
export function rejectUnknownKeys(path: string, given: object, known: readonly string[]): void {
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new UnknownOptionError(path ? `${path}.${key}` : key, known)
  }
}

/** Rejects anything but a plain options object (an array, null, a number...). */
export function checkObject(option: string, value: unknown): Readonly<Record<string, unknown>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(option, 'an object', value)
  return value as Readonly<Record<string, unknown>>
}

/** Checks a flag: `true` or `false`. */
export function checkBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, 'true or false', value)
  return value
}
