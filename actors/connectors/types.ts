/**
 * The contracts of sources and sinks: the edges of a job where records enter and leave.
 */

import type { OperatorListStateDescriptor } from '../state/operator-state.ts'
import type { ListState } from '../api/state.ts'

/** What a source or sink instance knows about itself. */
export interface ConnectorContext {
  job: string
  operator: string
  /** This instance's index, `0 <= instance < parallelism`. */
  instance: number
  parallelism: number
  /**
   * Sinks that declare `operatorState`: the list of one of those states, this instance's share
   * (docs/architecture.md section 16). The handle may be kept; it holds the restored list from the
   * first `write()` on (`open()` runs before the restore).
   */
  operatorState?<T>(descriptor: OperatorListStateDescriptor<T>): ListState<T>
}

/** What `poll` reports: more records are ready, none are ready yet, or the input is exhausted. */
export type PollResult = 'more' | 'idle' | 'end'

/**
 * One instance of a replayable source. Between two `poll` calls the runtime may ask for the
 * `offset`, which must say exactly where to resume so no record is read twice or missed.
 */
export interface SourceReader<T> {
  /** Resumes from an offset taken by `offset()` in an earlier run. Called before the first `poll`. */
  restore?(offset: unknown): void | Promise<void>
  /** Emits up to `max` records synchronously. */
  poll(emit: (record: T) => void, max: number): PollResult
  /** The position after the last emitted record (CBOR-encodable). */
  offset(): unknown
  close?(): void | Promise<void>
}

/** A replayable source of records; the runtime creates one reader per instance. */
export interface Source<T> {
  readonly kind: string
  /**
   * True if the source's work is a set of splits that any instance can read (docs/architecture.md
   * section 16). Then `offset()` must return an array, one element per split the instance holds
   * (the split's state: which split, and where to resume in it), and on a restore the runtime
   * concatenates the arrays of all old instances, splits them evenly over the new ones (as
   * operator list state with `split` distribution) and hands each instance its share, possibly
   * empty, to `restore()`; a reader that was restored reads only the splits it was given. So the
   * source can restore with another parallelism. Other sources keep their parallelism across a
   * restore (changing it is refused with an `IncompatibleSnapshotError`).
   * @default false
   */
  readonly rescalable?: boolean
  open(ctx: ConnectorContext): SourceReader<T> | Promise<SourceReader<T>>
}

/** One instance of a sink. */
export interface SinkWriter<T> {
  /** Takes a batch of records; called synchronously on the hot path. */
  write(records: readonly T[]): void
  /** Called when a checkpoint that covers everything written so far completed. */
  checkpointCompleted?(checkpointId: number): void | Promise<void>
  /** Flushes and releases resources at the end of the job or before a restart. */
  close?(): void | Promise<void>
}

/** Where records leave the job; the runtime creates one writer per instance. */
export interface Sink<T> {
  readonly kind: string
  /**
   * Operator list states the writers keep (through `ctx.operatorState(d)`), snapshotted with every
   * checkpoint and handed out again on a restore, with another parallelism too.
   * @default none
   */
  readonly operatorState?: readonly OperatorListStateDescriptor<unknown>[]
  open(ctx: ConnectorContext): SinkWriter<T> | Promise<SinkWriter<T>>
}
