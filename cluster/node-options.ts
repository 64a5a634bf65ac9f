/**
 * What a node is given and what it knows of the others: its options and its membership entries.
 * Apart from the node itself, so that the coordinator it runs can read them without importing it.
 */
import type { NatsConnection } from '@nats-io/transport-node'
import type { InspectionEvent } from 'xstate'
import type { JobGraph } from '../actors/api/graph.ts'
import type { ExecutorTuning } from '../actors/runtime/executor-options.ts'
import type { Logger } from '../actors/runtime/logger.ts'
import type { Clock } from '../actors/time/clock.ts'
import type { SnapshotStore } from '../persistence/store.ts'
import type { ResolvedCheckpointOptions } from '../supervisor/checkpoint-options.ts'
import type { Heartbeat } from './control.ts'

/** Options of {@link WeirNode}. */
export interface NodeOptions {
  graph: JobGraph
  store: SnapshotStore
  nats: NatsConnection
  /** This node's id, unique in the job. @default `<host>-<pid>` */
  nodeId?: string
  /** Instances of each operator this node takes. @default 1 */
  slots?: number
  /** First token of every subject. @default 'weir' */
  subjectPrefix?: string
  checkpoints: ResolvedCheckpointOptions
  /** What the first coordinator starts from when no node ran the job yet. @default 'latest' */
  restore?: 'latest' | 'none' | number
  /** Nodes the coordinator waits for before the first deploy. @default 1 */
  minNodes?: number
  /** Time between heartbeats, in ms. @default 500 */
  heartbeatMs?: number
  /** A node silent this long is dead. @default 3000 */
  nodeTimeoutMs?: number
  /** How long a coordinator's lease outlives its last renewal. @default 5000 */
  leaseExpiryMs?: number
  /**
   * A node cut off from NATS this long gives up: it exits with an error instead of waiting for
   * ever. (After the node timeout it already stopped its instances and its coordination.)
   * @default 60000
   */
  natsTimeoutMs?: number
  /** Restarts in a row (without a completed checkpoint in between) before the job fails. @default 20 */
  maxRestarts?: number
  logger: Logger
  tuning: ExecutorTuning
  strictState?: boolean
  clock?: Clock
  /** XState's inspector for the lifecycle actors of this node's instances (as `RunOptions.inspect`). */
  inspect?: (event: InspectionEvent) => void
}

/** A membership entry: the last heartbeat of a node and when it came. */
export interface Member extends Heartbeat {
  seenAt: number
}
