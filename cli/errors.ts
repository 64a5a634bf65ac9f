/** Errors of the `weir` command itself (not of a job): each one says what exists instead. */
import { TerminalError } from '../persistence/errors.ts'

/**
 * What a read-only command was asked for is not in the store: an unknown job, snapshot,
 * operator or state. The message names what is there, so the user can correct the command.
 */
export class NotFoundError extends TerminalError {
  override readonly name = 'NotFoundError'
  constructor(
    message: string,
    readonly job: string,
  ) {
    super(message)
  }
}
