/**
 * The local executor's options, tuning (with its defaults), metrics and per-instance stats, and
 * the interface it acknowledges checkpoints through: the types the supervisor, the cluster node
 * and the CLI share with local-executor.ts.
 */
import type { InspectionEvent } from 'xstate'
import type { SnapshotStore } from '../../persistence/store.ts'
import type { Logger } from './logger.ts'
import type { CheckpointMode } from './alignment.ts'
import type { Placement } from './channel.ts'
import type { JobGraph } from '../api/graph.ts'
import type { InstanceStatus } from './lifecycle.ts'
import type { Watchdog } from './watchdog.ts'
import type { Clock } from '../time/clock.ts'

/** Where instances send checkpoint acknowledgements (the checkpoint coordinator). */
export interface CheckpointAcks {
  ack(attempt: number, checkpointId: number, instanceId: string, bytes: number): void
  decline(attempt: number, checkpointId: number, instanceId: string, error: unknown): void
}

/** Tuning of the local executor. */
export interface ExecutorTuning {
  /** Records per batch on a channel. @default 1024 */
  batchSize: number
  /** Batches a channel holds before its sender waits. @default 8 */
  channelCapacity: number
  /** Longest stretch of processing before yielding to timers and I/O, in ms. @default 5 */
  sliceMs: number
}

export const DEFAULT_TUNING: ExecutorTuning = { batchSize: 1024, channelCapacity: 8, sliceMs: 5 }

export interface ExecutorOptions {
  graph: JobGraph
  attempt: number
  store: SnapshotStore | undefined
  mode: CheckpointMode
  acks: CheckpointAcks
  logger: Logger
  tuning: ExecutorTuning
  /** Freeze what state handles return (`RunOptions.strictState`). */
  strictState?: boolean
  /** Told when each slice starts and ends; asks what a stuck slice is doing. */
  watchdog?: Watchdog | undefined
  /** Processing time of timers, state TTL and idleness (`RunOptions.clock`). @default systemClock */
  clock?: Clock | undefined
  /**
   * The instances that run in this process and channels to the others (a cluster node).
   * @default every instance runs here
   */
  placement?: Placement | undefined
  /** XState's inspector for the instances' lifecycle actors (`RunOptions.inspect`). */
  inspect?: ((event: InspectionEvent) => void) | undefined
}

/** Measurements of one attempt. */
export interface ExecutorMetrics {
  /** The longest single slice of work on the event loop, in ms. */
  maxSliceMs: number
  /** The longest synchronous part of a snapshot (all instances), in ms. */
  maxSnapshotSyncMs: number
  /** The longest slice spent encoding key groups, in ms. */
  maxEncodeSliceMs: number
}

/** One instance as `weir status` shows it. */
export interface InstanceStats {
  /** `operator[index]`. */
  instance: string
  /** Its lifecycle state (e.g. `running.processing`, `running.aligning`, `finished`). */
  status: InstanceStatus
  recordsIn: number
  recordsOut: number
  /** True if an output has no credit now: an operator downstream is slower (backpressure). */
  backpressured: boolean
}
