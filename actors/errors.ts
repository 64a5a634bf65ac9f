/**
 * Errors of the programming model and the instance actors. Each says which failure it is, names
 * the job, operator and key where it can, and says whether retrying can help (`retryable`).
 */

/** The job definition is malformed. A user's mistake: fix the job, retrying cannot help. */
export class JobDefinitionError extends TypeError {
  override readonly name = 'JobDefinitionError'
  readonly retryable = false
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
export class UserCodeError extends Error {
  override readonly name = 'UserCodeError'
  readonly retryable = true
  constructor(
    readonly operator: string,
    readonly instance: number,
    readonly key: unknown,
    cause: unknown,
  ) {
    const what = cause instanceof Error ? cause.message : String(cause)
    super(`operator ${operator}[${instance}]${key === undefined ? '' : ` key ${JSON.stringify(String(key))}`}: user code threw: ${what}`, { cause })
  }
}

/** A snapshot cannot be restored into this job (different maxParallelism, state kind changed...). */
export class IncompatibleSnapshotError extends Error {
  override readonly name = 'IncompatibleSnapshotError'
  readonly retryable = false
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
export class ConnectorError extends Error {
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
