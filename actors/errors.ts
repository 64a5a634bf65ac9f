import { RetryableError, TerminalError, WeirError, describeThrown } from '../persistence/errors.ts'

/**
 * Errors of the programming model and the instance actors. Each says which failure it is, names
 * the job, operator and key where it can, and says whether retrying can help (`retryable`).
 */

/** The job definition is malformed. A user's mistake: fix the job, retrying cannot help. */
export class JobDefinitionError extends TerminalError {
  override readonly name = 'JobDefinitionError'
  constructor(
    message: string,
    readonly job?: string,
    readonly operator?: string,
  ) {
    super(
      operator !== undefined
        ? `job ${job ?? '?'}, operator ${operator}: ${message}`
        : job !== undefined
          ? `job ${job}: ${message}`
          : message,
    )
  }
}

/** User code (a map, a process function, a key selector...) threw. A restart may help. */
export class UserCodeError extends RetryableError {
  override readonly name = 'UserCodeError'
  constructor(
    readonly operator: string,
    readonly instance: number,
    readonly key: unknown,
    cause: unknown,
  ) {
    const what = describeThrown(cause)
    super(`operator ${operator}[${instance}]${key === undefined ? '' : ` key ${JSON.stringify(String(key))}`}: user code threw: ${what}`, { cause })
  }
}

/** A snapshot cannot be restored into this job (different maxParallelism, state kind changed...). */
export class IncompatibleSnapshotError extends TerminalError {
  override readonly name = 'IncompatibleSnapshotError'
  constructor(
    message: string,
    readonly job: string,
    readonly snapshotId: number,
    readonly operator?: string,
  ) {
    super(`job ${job}, snapshot ${snapshotId}${operator === undefined ? '' : `, operator ${operator}`}: ${message}`)
  }
}

/** A source or sink failed at its edge of the world (file missing, line not JSON...). */
export class ConnectorError extends WeirError {
  override readonly name = 'ConnectorError'
  constructor(
    message: string,
    readonly operator: string,
    readonly retryable: boolean,
    cause?: unknown,
  ) {
    super(`operator ${operator}: ${message}`, cause === undefined ? undefined : { cause })
  }
}

/** A key selector returned something that is not a key. The job must be fixed; a restart cannot help. */
export class KeySelectorError extends TerminalError {
  override readonly name = 'KeySelectorError'
  constructor(
    readonly operator: string,
    readonly key: unknown,
  ) {
    super(`keyBy into ${operator}: the key selector returned ${describeValue(key)} (${typeof key}); keys must be strings, finite numbers or bigints`)
  }
}

/** A value in a few words for an error message; never throws, whatever the value is. */
export function describeValue(value: unknown): string {
  try {
    if (typeof value === 'string') return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value)
    if (typeof value === 'bigint') return `${value}n`
    if (typeof value === 'symbol' || typeof value === 'function') return String(value)
    if (typeof value === 'object' && value !== null) {
      const json = JSON.stringify(value)
      if (json !== undefined) return json.length > 100 ? `${json.slice(0, 100)}...` : json
    }
    return String(value)
  } catch {
    const name = (value as { constructor?: { name?: unknown } } | null)?.constructor?.name
    return `an unprintable ${typeof name === 'string' ? name : typeof value}`
  }
}

/**
 * A key restored from a keyed chunk does not hash to that chunk's key group: the chunk was moved
 * or forged. The executor reports it as the `CorruptSnapshotError` of the snapshot it restores.
 */
export class MisplacedKeyError extends TerminalError {
  override readonly name = 'MisplacedKeyError'
  constructor(
    readonly key: unknown,
    /** The key group of the chunk the key was found in. */
    readonly keyGroup: number,
    /** The key group the key belongs to. */
    readonly actualKeyGroup: number,
  ) {
    super(`key ${describeValue(key)} was found in key group ${keyGroup} but belongs to key group ${actualKeyGroup}`)
  }
}
