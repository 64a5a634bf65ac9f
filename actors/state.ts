/**
 * Keyed state as in Flink: value, list, map, reducing and aggregating state, each declared once
 * by a named descriptor and used through a handle bound to the key of the record in hand.
 *
 * Values live on the heap. Treat what a handle returns as read-only and write back with
 * `update`/`add`/`put`: a snapshot captures what was last written through the handle. Strict mode
 * (`RunOptions.strictState`) freezes what handles return, so a change in place throws. Without a
 * `serde`, keep plain data in state (objects, arrays, Maps, Sets, Dates, bigints, typed arrays):
 * a checkpoint refuses class instances, functions, symbols and cycles.
 */
import type { Serde } from '../persistence/serde.ts'
import { JobDefinitionError } from './errors.ts'

/** The kinds of keyed state. */
export type StateKind = 'value' | 'list' | 'map' | 'reducing' | 'aggregating'

/** Options every state kind takes. */
export interface StateOptions<W> {
  /**
   * How the state's values are written into snapshots. Values of a state without one must be
   * plain data (checked when a checkpoint writes them, see `UnserializableStateError`). For list state it encodes each element,
   * for map state each value, for aggregating state the accumulator.
   * @default CBOR (cbor-x)
   */
  serde?: Serde<W>
}

/** What every state descriptor has: its kind, its name (its id in snapshots) and its serde (undefined: CBOR). */
export interface DescriptorBase<K extends StateKind> {
  readonly kind: K
  readonly name: string
  readonly serde: Serde<unknown> | undefined
}

/** A declared value state (see {@link valueState}). */
export interface ValueStateDescriptor<T> extends DescriptorBase<'value'> {
  readonly default: T | undefined
  /** Type marker only. */
  readonly __type?: T
}
/** A declared list state (see {@link listState}). */
export interface ListStateDescriptor<T> extends DescriptorBase<'list'> {
  readonly __type?: T
}
/** A declared map state (see {@link mapState}). */
export interface MapStateDescriptor<K, V> extends DescriptorBase<'map'> {
  readonly __type?: [K, V]
}
/** A declared reducing state (see {@link reducingState}). */
export interface ReducingStateDescriptor<T> extends DescriptorBase<'reducing'> {
  // A method signature, so a descriptor of numbers is also a StateDescriptor (of unknown).
  reduce(a: T, b: T): T
}
/** How an aggregating state folds inputs into an accumulator and reads a result from it. */
export interface Aggregator<IN, ACC, OUT> {
  createAccumulator(): ACC
  add(accumulator: ACC, value: IN): ACC
  getResult(accumulator: ACC): OUT
}
/** A declared aggregating state (see {@link aggregatingState}). */
export interface AggregatingStateDescriptor<IN, ACC, OUT> extends DescriptorBase<'aggregating'> {
  readonly aggregator: Aggregator<IN, ACC, OUT>
}

/** Any state descriptor. */
export type StateDescriptor =
  | ValueStateDescriptor<unknown>
  | ListStateDescriptor<unknown>
  | MapStateDescriptor<unknown, unknown>
  | ReducingStateDescriptor<unknown>
  | AggregatingStateDescriptor<unknown, unknown, unknown>

/** A single value per key. */
export interface ValueState<T> {
  /** The value, or the descriptor's default when none was written. */
  value(): T
  update(value: T): void
  clear(): void
}
/** A list per key. */
export interface ListState<T> {
  /** The elements (empty when none). Read-only: use `add`/`update`. */
  get(): readonly T[]
  add(value: T): void
  addAll(values: readonly T[]): void
  /** Replaces the whole list. */
  update(values: readonly T[]): void
  clear(): void
}
/** A map per key. */
export interface MapState<K, V> {
  get(key: K): V | undefined
  put(key: K, value: V): void
  putAll(entries: Iterable<readonly [K, V]>): void
  remove(key: K): void
  contains(key: K): boolean
  entries(): IterableIterator<[K, V]>
  keys(): IterableIterator<K>
  values(): IterableIterator<V>
  isEmpty(): boolean
  clear(): void
}
/** A value per key that every `add` folds in with the descriptor's reduce function. */
export interface ReducingState<T> {
  get(): T | undefined
  add(value: T): void
  clear(): void
}
/** An accumulator per key; `get` reads the result, `add` folds in an input. */
export interface AggregatingState<IN, OUT> {
  get(): OUT | undefined
  add(value: IN): void
  clear(): void
}

/** The handle type of a descriptor. */
export type StateHandle<D> =
  D extends ValueStateDescriptor<infer T>
    ? ValueState<T>
    : D extends ListStateDescriptor<infer T>
      ? ListState<T>
      : D extends MapStateDescriptor<infer K, infer V>
        ? MapState<K, V>
        : D extends ReducingStateDescriptor<infer T>
          ? ReducingState<T>
          : D extends AggregatingStateDescriptor<infer IN, unknown, infer OUT>
            ? AggregatingState<IN, OUT>
            : never

function checkName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new JobDefinitionError(`${kind}State needs a non-empty name, got ${String(name)}`)
  }
  return name
}

function checkSerde(name: string, serde: unknown): Serde<unknown> | undefined {
  if (serde === undefined) return undefined
  const s = serde as Partial<Serde<unknown>>
  if (typeof s.encode !== 'function' || typeof s.decode !== 'function') {
    throw new JobDefinitionError(`state ${name}: serde needs encode(value) and decode(bytes) functions`)
  }
  return serde as Serde<unknown>
}

/**
 * Declares a value state.
 * @example
 * const count = valueState<number>('count', { default: 0 })
 * // in a process function:
 * const c = ctx.state(count)
 * c.update(c.value() + 1)
 */
export function valueState<T>(name: string, options: StateOptions<T> & { default?: T } = {}): ValueStateDescriptor<T> {
  checkName('value', name)
  return Object.freeze({ kind: 'value', name, default: options.default, serde: checkSerde(name, options.serde) })
}

/** Declares a list state. */
export function listState<T>(name: string, options: StateOptions<T> = {}): ListStateDescriptor<T> {
  checkName('list', name)
  return Object.freeze({ kind: 'list', name, serde: checkSerde(name, options.serde) })
}

/** Declares a map state. Map keys must be CBOR-encodable; the serde, if given, encodes the values. */
export function mapState<K, V>(name: string, options: StateOptions<V> = {}): MapStateDescriptor<K, V> {
  checkName('map', name)
  return Object.freeze({ kind: 'map', name, serde: checkSerde(name, options.serde) })
}

/**
 * Declares a reducing state.
 * @example
 * const max = reducingState<number>('max', (a, b) => Math.max(a, b))
 */
export function reducingState<T>(name: string, reduce: (a: T, b: T) => T, options: StateOptions<T> = {}): ReducingStateDescriptor<T> {
  checkName('reducing', name)
  if (typeof reduce !== 'function') throw new JobDefinitionError(`state ${name}: reducingState needs a reduce function`)
  return Object.freeze({ kind: 'reducing', name, reduce, serde: checkSerde(name, options.serde) })
}

/**
 * Declares an aggregating state.
 * @example
 * const avg = aggregatingState('avg', {
 *   createAccumulator: () => ({ sum: 0, n: 0 }),
 *   add: (a, v: number) => ({ sum: a.sum + v, n: a.n + 1 }),
 *   getResult: (a) => a.sum / a.n,
 * })
 */
export function aggregatingState<IN, ACC, OUT>(
  name: string,
  aggregator: Aggregator<IN, ACC, OUT>,
  options: StateOptions<ACC> = {},
): AggregatingStateDescriptor<IN, ACC, OUT> {
  checkName('aggregating', name)
  for (const fn of ['createAccumulator', 'add', 'getResult'] as const) {
    if (typeof aggregator?.[fn] !== 'function') throw new JobDefinitionError(`state ${name}: aggregatingState needs ${fn}()`)
  }
  return Object.freeze({ kind: 'aggregating', name, aggregator, serde: checkSerde(name, options.serde) })
}

export function isStateDescriptor(value: unknown): value is StateDescriptor {
  if (typeof value !== 'object' || value === null) return false
  const kind = (value as { kind?: unknown }).kind
  return kind === 'value' || kind === 'list' || kind === 'map' || kind === 'reducing' || kind === 'aggregating'
}
