/**
 * A job as data: the operators and edges a {@link JobGraph} holds once the builder is done, which
 * the runtime, the supervisor and the cluster read. Only types, and what they say of an operator.
 */
import type { Sink, Source } from '../connectors/types.ts'
import type { OperatorListStateDescriptor, OperatorProcessFunction } from '../state/operator-state.ts'
import type { Key } from '../state/key-groups.ts'
import type { WatermarkStrategy } from '../time/watermarks.ts'
import type { BroadcastContext, MessageHandler, ProcessContext, TimerContext } from './contexts.ts'
import type { OutputTag } from './side-outputs.ts'
import type { MapStateDescriptor, StateDescriptor } from './state.ts'
/** A stateless step chained onto the operator before it (no state, no own instances). */
export type Transform =
  | { kind: 'map'; name: string; fn: (r: unknown) => unknown }
  | { kind: 'filter'; name: string; fn: (r: unknown) => boolean }
  | { kind: 'flatMap'; name: string; fn: (r: unknown, out: (u: unknown) => void) => void }

/**
 * How records of an edge are spread over the instances of its target. `broadcast`: every record
 * to every instance (the broadcast input of a keyed process).
 */
export type Partitioning = 'forward' | 'hash' | 'rebalance' | 'broadcast'

/** A connection from an operator's output into an input of another. */
export interface EdgeSpec {
  from: string
  to: string
  /** Which input of the target: 0, or 1 for the second stream of a connected process. */
  input: 0 | 1
  /** Only records sent to this side output (`ctx.output(tag, ...)`) travel on this edge. */
  tag?: string | undefined
  partitioning: Partitioning
  keySelector: ((r: unknown) => Key) | undefined
  transforms: readonly Transform[]
}

/** What every operator of a {@link JobGraph} has: its stable id and its parallelism. */
export interface OperatorBase {
  uid: string
  parallelism: number
}
/** A source operator of a {@link JobGraph}. */
export interface SourceSpec extends OperatorBase {
  kind: 'source'
  source: Source<unknown>
  /** Event time and watermarks of the source, if any. */
  watermarks?: WatermarkStrategy<unknown> | undefined
}
/** A keyed process operator of a {@link JobGraph}. */
export interface ProcessSpec extends OperatorBase {
  kind: 'process'
  states: readonly StateDescriptor[]
  /** One function per input. */
  fns: readonly ((record: unknown, ctx: ProcessContext<Key, unknown>) => void)[]
  /** Handles messages sent to this operator with `ctx.send`. */
  onMessage?: MessageHandler<unknown, Key, unknown>
  /** The operators this one sends messages to. */
  sendsTo?: readonly string[]
  /** Called when a timer of a key fires; operators without it have no timers. */
  onTimer?: ((time: number, ctx: TimerContext<Key, unknown>) => void) | undefined
  /** What happens to records at or behind the watermark. */
  lateRecords?: 'process' | 'drop' | OutputTag<unknown> | undefined
  /** The broadcast input (input 1), if the keyed stream was connected to a broadcast stream. */
  broadcast?: BroadcastSpec
}
/** A non-keyed process operator of a {@link JobGraph}, with operator list state. */
export interface OperatorProcessSpec extends OperatorBase {
  kind: 'operator-process'
  states: readonly OperatorListStateDescriptor<unknown>[]
  fn: OperatorProcessFunction<unknown, unknown>
}
/** A sink operator of a {@link JobGraph}. */
export interface SinkSpec extends OperatorBase {
  kind: 'sink'
  sink: Sink<unknown>
}
/** Any operator of a {@link JobGraph}. */
export type OperatorSpec = SourceSpec | ProcessSpec | SinkSpec | OperatorProcessSpec

/** A job as data: operators in topological order and the edges between them. */
export interface JobGraph {
  name: string
  maxParallelism: number
  operators: readonly OperatorSpec[]
  edges: readonly EdgeSpec[]
}


/** The broadcast side of a keyed process, in a {@link ProcessSpec} of a job graph. */
export interface BroadcastSpec {
  states: readonly MapStateDescriptor<unknown, unknown>[]
  fn: (record: unknown, ctx: BroadcastContext<unknown>) => void
}

/** True if `op` can restore with another parallelism than its snapshot was taken with. */
export function canRescale(op: OperatorSpec): boolean {
  if (op.kind === 'source') return op.source.rescalable === true
  if (op.kind === 'sink') return (op.sink.operatorState?.length ?? 0) > 0
  return op.kind === 'process' || op.kind === 'operator-process'
}

/** True if every instance of `op` writes an operator chunk into every snapshot. */
export function writesOperatorChunk(op: OperatorSpec): boolean {
  if (op.kind === 'sink') return (op.sink.operatorState?.length ?? 0) > 0
  return op.kind === 'source' || op.kind === 'operator-process' || (op.kind === 'process' && op.broadcast !== undefined)
}

