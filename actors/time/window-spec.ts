/**
 * What a window operator is defined by: the user's functions and options (`WindowAggregator`,
 * `WindowFunction`, `WindowOptions`, the default `WindowResult`) and the checked definition
 * (`WindowContents`, `WindowSpec`) that `WindowLogic` (actors/time/window-logic.ts) runs. Types
 * only, so the checks (actors/time/window-operator.ts) and the runtime both read them without
 * importing each other.
 */
import type { OperatorOptions } from '../api/options.ts'
import type { Key } from '../state/key-groups.ts'
import type { OutputTag } from '../api/side-outputs.ts'
import type { Aggregator } from '../api/state.ts'
import type { TimeWindow, WindowAssigner } from './windows.ts'

/** The record a window operator emits per firing unless `result` says otherwise. */
export interface WindowResult<K extends Key, R> {
  readonly key: K
  readonly window: TimeWindow
  readonly value: R
}

/** Options of `reduce`, `aggregate` and `process` on a {@link WindowedStream}. */
export interface WindowOptions<K extends Key, R, OUT> extends OperatorOptions {
  /**
   * Builds the record emitted when a window fires from the key, the window and its value.
   * @default (key, window, value) => ({ key, window, value })
   */
  result?: (key: K, window: TimeWindow, value: R) => OUT
}

/**
 * An {@link Aggregator} for windows. Session windows merge, and so must their accumulators:
 * `aggregate` over session windows needs `merge`.
 */
export interface WindowAggregator<IN, ACC, OUT> extends Aggregator<IN, ACC, OUT> {
  /** Combines the accumulators of two windows that merge (session windows); `a` is the earlier window's. */
  merge?(a: ACC, b: ACC): ACC
}

/** A full window function: gets every record of a window when it fires (in arrival order) and returns its value. */
export type WindowFunction<T, K extends Key, R> = (key: K, window: TimeWindow, records: readonly T[]) => R

/** What a window operator keeps and how it combines records, as `windowContents` checked it. */
export type WindowContents = { kind: 'reduce'; reduce: (a: unknown, b: unknown) => unknown } | { kind: 'aggregate'; aggregator: WindowAggregator<unknown, unknown, unknown> } | { kind: 'process'; fn: WindowFunction<unknown, Key, unknown> }

/** Everything a `WindowLogic` runs: the operator's name, the window definition, the contents and the result function. */
export interface WindowSpec {
  operator: string
  assigner: WindowAssigner
  lateness: number
  lateTag: OutputTag<unknown> | undefined
  contents: WindowContents
  result: ((key: Key, window: TimeWindow, value: unknown) => unknown) | undefined
}

/** A window, as it is defined: the assigner and what `allowedLateness` and `lateOutput` added. */
export type WindowDefinition = Pick<WindowSpec, 'assigner' | 'lateness' | 'lateTag'>
