import { RetryableError, TerminalError, describeThrown } from '../persistence/errors.ts'

/**
 * Errors of the control plane. Each says which failure it is and whether retrying can help
 * (`retryable`), so the supervisor and the user know what to do.
 */

/** An option has a wrong type or value. A user's mistake: fix the option, retrying cannot help. */
export class InvalidOptionError extends TerminalError {
  override readonly name = 'InvalidOptionError'
  constructor(
    /** Dotted path of the option, e.g. `checkpoints.intervalMs`. */
    readonly option: string,
    /** What was expected, e.g. `a positive integer`. */
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`option ${option}: expected ${expected}, got ${describe(value)}`)
  }
}

/** An option name that does not exist (often a typo). */
export class UnknownOptionError extends TerminalError {
  override readonly name = 'UnknownOptionError'
  constructor(
    readonly option: string,
    readonly known: readonly string[],
  ) {
    super(`unknown option ${option}; known options: ${known.join(', ')}`)
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  if (value === null) return 'null'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

/** Rejects keys of `given` that are not in `known`, naming the first stranger. */
export function rejectUnknownKeys(path: string, given: object, known: readonly string[]): void {
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new UnknownOptionError(path ? `${path}.${key}` : key, known)
  }
}

/** The restart strategy gave up: the job failed for good. `cause` is the last failure. */
export class JobFailedError extends TerminalError {
  override readonly name = 'JobFailedError'
  constructor(
    readonly job: string,
    /** Attempts run, the failed ones included. */
    readonly attempts: number,
    /** Why the restart strategy gave up. */
    readonly reason: string,
    cause: unknown,
  ) {
    super(`job ${job} failed after ${attempts} attempts (${reason}): ${describeThrown(cause)}`, { cause })
  }
}

/** Too many checkpoints failed in a row (`tolerableFailures`). The job fails over. */
export class CheckpointFailedError extends RetryableError {
  override readonly name = 'CheckpointFailedError'
  constructor(
    readonly job: string,
    readonly checkpointId: number,
    readonly reason: string,
    cause?: unknown,
  ) {
    super(`job ${job}: checkpoint ${checkpointId} failed (${reason}), more than the tolerable failures in a row`, cause === undefined ? undefined : { cause })
  }
}
