/** What a job and its operators declare when they are defined: the option objects of the builder. */
import type { Key } from '../state/key-groups.ts'
import type { WatermarkStrategy } from '../time/watermarks.ts'
import type { KeyedBroadcastTimerContext, MessageHandler, TimerContext } from './contexts.ts'
import type { OutputTag } from './side-outputs.ts'
import type { StateDescriptor } from './state.ts'

/** Options of a job. */
export interface JobOptions {
  /**
   * Number of key groups: the upper bound of any keyed operator's parallelism. It cannot change
   * across a restore.
   * @default 128
   */
  maxParallelism?: number
  /**
   * Parallelism of operators that do not set their own.
   * @default 1
   */
  parallelism?: number
}

/** Options of one operator. */
export interface OperatorOptions {
  /** Number of parallel instances. @default the job's parallelism */
  parallelism?: number
}

/** Options of a source. */
export interface SourceOptions<T> extends OperatorOptions {
  /** Event time and watermarks, e.g. `boundedOutOfOrderness(...)`; absent: no event time. */
  watermarks?: WatermarkStrategy<T>
}

/** What a keyed `process` declares. */
export interface ProcessOptions<K extends Key = Key, OUT = unknown, T = unknown> extends OperatorOptions {
  /** The keyed states the function uses, by any names. */
  state?: Record<string, StateDescriptor>
  /**
   * Called once per fired timer, with the timer's key and state bound, like the process
   * function (synchronous too). Declaring it turns on `ctx.timers`.
   * @example
   * stream.keyBy((c) => c.user).process('sessions', {
   *   state: { last },
   *   onTimer: (time, ctx) => ctx.emit({ user: ctx.key, sessionEnd: time }),
   * }, (c, ctx) => {
   *   ctx.timers.deleteProcessingTimeTimer(ctx.state(last).value() + 30_000)
   *   ctx.state(last).update(ctx.timers.currentProcessingTime())
   *   ctx.timers.registerProcessingTimeTimer(ctx.state(last).value() + 30_000)
   * })
   */
  onTimer?: (time: number, ctx: TimerContext<K, OUT>) => void
  /**
   * Records whose timestamp is at or behind the operator's watermark: `'process'` them like any
   * other (Flink's default), `'drop'` them, or send them to a side output.
   * @default 'process'
   */
  lateRecords?: 'process' | 'drop' | OutputTag<T>
  /** Handles messages that keyed operators send to this one with `ctx.send` (docs/architecture.md section 15). */
  onMessage?: MessageHandler<unknown, K, OUT>
  /**
   * The keyed operators this one sends messages to with `ctx.send`, by name. Each must have an
   * `onMessage`; `ctx.send` to an operator not listed fails the job.
   */
  sendsTo?: readonly string[]
}

/** What a keyed operator reached only by messages declares (see {@link JobBuilder.actor}). */
export interface ActorOptions<M, K extends Key, OUT> extends OperatorOptions {
  /** The keyed states the handler uses, by any names. */
  state?: Record<string, StateDescriptor>
  /** Handles each message, with `ctx` bound to its key. */
  onMessage: MessageHandler<M, K, OUT>
  /** The keyed operators this one sends messages to with `ctx.send`. */
  sendsTo?: readonly string[]
}


/** What a keyed process connected to a broadcast stream declares: as a keyed process, without messages (not supported here yet). */
export interface BroadcastProcessOptions<K extends Key, OUT> extends Omit<ProcessOptions<K, OUT>, 'onTimer' | 'onMessage' | 'sendsTo'> {
  /** Called when a timer of a key fires, as in a keyed process; it may read broadcast state. */
  onTimer?: (time: number, ctx: KeyedBroadcastTimerContext<K, OUT>) => void
}

