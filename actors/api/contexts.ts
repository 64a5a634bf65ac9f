/**
 * What user code sees while it runs: the contexts passed to process functions, timers and
 * broadcast functions, and the function types themselves. Only types; every room may import them.
 */
import type { Key } from '../state/key-groups.ts'
import type { OutputTag } from './side-outputs.ts'
import type { MapState, MapStateDescriptor, StateDescriptor, StateHandle } from './state.ts'

/**
 * Timers of the current key (docs/architecture.md section 17), for keyed `process` operators
 * that declare `onTimer`. At most one timer per (key, domain, time): registering it again does
 * nothing. Times are ms; a time that is not a finite number (or +Infinity for event time) throws.
 */
export interface TimerService {
  /** Processing time now, from the run's `clock`. */
  currentProcessingTime(): number
  /** The operator instance's watermark: -Infinity before the first watermark. */
  currentWatermark(): number
  /** Calls `onTimer` when the watermark reaches `time` (time <= watermark). */
  registerEventTimeTimer(time: number): void
  /** Calls `onTimer` when processing time reaches `time`. */
  registerProcessingTimeTimer(time: number): void
  deleteEventTimeTimer(time: number): void
  deleteProcessingTimeTimer(time: number): void
}

/** What user code sees while it processes a record of a keyed stream. */
export interface ProcessContext<K extends Key, OUT> {
  /** The key of the record in hand. */
  readonly key: K
  /** The operator instance (subtask) index. */
  readonly instance: number
  /** The handle of a declared state, bound to the current key. */
  state<D extends StateDescriptor>(descriptor: D): StateHandle<D>
  /** Sends a record downstream. */
  emit(record: OUT): void
  /**
   * Sends `message` to key `key` of the keyed operator `operator`, whose `onMessage` handles it
   * with that key's state. The target must be listed in this operator's `sendsTo`. Messages are
   * plain data (they are written into snapshots while in flight) and arrive in the order sent
   * between one pair of instances; cycles are allowed (docs/architecture.md section 15).
   * @example
   * ctx.send('inventory', order.sku, { reserve: order.quantity })
   */
  send(operator: string, key: Key, message: unknown): void
  /** The event time of the record (or timer) in hand; undefined on a stream without event time. */
  readonly timestamp: number | undefined
  /** Timers of the current key; using them needs `onTimer` in the process options. */
  readonly timers: TimerService
  /** Sends a record to a side output, read with `.sideOutput(tag)` on the operator's stream. */
  output<T>(tag: OutputTag<T>, record: T): void
}

/** What `onTimer` sees: the context of the timer's key, plus which kind of timer fired. */
export interface TimerContext<K extends Key, OUT> extends ProcessContext<K, OUT> {
  readonly timeDomain: 'event-time' | 'processing-time'
  /** The timer's time. */
  readonly timestamp: number
}

/**
 * Handles a message sent with `ctx.send` to this operator: called with `ctx` bound to the
 * message's key and its state, like a record. Synchronous, as a {@link ProcessFunction}.
 */
export type MessageHandler<M, K extends Key, OUT> = (message: M, ctx: ProcessContext<K, OUT>) => void

/**
 * The function of a keyed operator, called once per record. It must be synchronous: it may not
 * be `async` (rejected when the job is defined) nor return a promise (fails the job with
 * `AsyncUserCodeError`), because the key and state it sees belong to this record only.
 */
export type ProcessFunction<T, K extends Key, OUT> = (record: T, ctx: ProcessContext<K, OUT>) => void


/** A broadcast map state as the keyed side sees it: read-only. */
export interface ReadOnlyBroadcastState<K, V> {
  get(key: K): V | undefined
  contains(key: K): boolean
  entries(): IterableIterator<[K, V]>
  keys(): IterableIterator<K>
  values(): IterableIterator<V>
  isEmpty(): boolean
  /** Number of entries. */
  size(): number
}

/** What `processElement` sees: a keyed context, plus read access to the broadcast states. */
export interface KeyedBroadcastContext<K extends Key, OUT> extends ProcessContext<K, OUT> {
  /** A broadcast state, read-only: writing it here throws (write it in `processBroadcast`). */
  broadcastState<MK, MV>(descriptor: MapStateDescriptor<MK, MV>): ReadOnlyBroadcastState<MK, MV>
}

/** What `onTimer` of a keyed process with a broadcast input sees: a timer context, plus read access to the broadcast states. */
export interface KeyedBroadcastTimerContext<K extends Key, OUT> extends TimerContext<K, OUT> {
  /** A broadcast state, read-only. */
  broadcastState<MK, MV>(descriptor: MapStateDescriptor<MK, MV>): ReadOnlyBroadcastState<MK, MV>
}

/** What `processBroadcast` sees: no key, and write access to the broadcast states. */
export interface BroadcastContext<OUT> {
  /** The operator instance (subtask) index. */
  readonly instance: number
  /** A broadcast state of this instance, writable. */
  broadcastState<MK, MV>(descriptor: MapStateDescriptor<MK, MV>): MapState<MK, MV>
  /** Sends a record downstream. */
  emit(record: OUT): void
}

/** The two functions of a keyed operator connected to a broadcast stream. Both synchronous. */
export interface BroadcastProcessFunctions<T, B, K extends Key, OUT> {
  /** Called once per keyed record, with its key's keyed state and read-only broadcast state. */
  processElement(record: T, ctx: KeyedBroadcastContext<K, OUT>): void
  /** Called on every instance for every broadcast record. It must be deterministic, so every instance's copy stays the same. */
  processBroadcast(record: B, ctx: BroadcastContext<OUT>): void
}

