import { RetryableError, TerminalError, describeThrown } from '../persistence/errors.ts'

/**
 * Errors of the control plane. Each says which failure it is and whether retrying can help
 * (`retryable`), so the supervisor and the user know what to do.
 */

// The option errors live with the stores, the lowest layer, so every layer throws the same ones.
export { InvalidOptionError, UnknownOptionError } from '../persistence/errors.ts'
export { rejectUnknownKeys } from '../persistence/option-checks.ts'

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

/**
 * Every source ended but the final checkpoint, which holds the final state, did not complete in
 * its tries. The attempt fails, so the restart strategy restores the last completed checkpoint
 * and runs the job to its end again; a job never reports finished without its final state.
 */
export class FinalCheckpointError extends RetryableError {
  override readonly name = 'FinalCheckpointError'
  constructor(
    readonly job: string,
    /** Checkpoints tried. */
    readonly tries: number,
    /** The last checkpoint tried, if one got an id. */
    readonly checkpointId: number | undefined,
    /** Why the last try failed. */
    readonly reason: string,
  ) {
    super(
      `job ${job}: the final checkpoint did not complete in ${tries} tries (last${checkpointId === undefined ? '' : `, checkpoint ${checkpointId}`}: ${reason}); ` +
        'the job runs again from its last completed checkpoint; if this repeats, raise the checkpoint timeout or check the store',
    )
  }
}
