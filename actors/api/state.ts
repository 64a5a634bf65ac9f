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
import type { Serde } from '../../persistence/serde.ts'
import { describeValue, JobDefinitionError, rejectAsync } from '../errors.ts'

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
  /**
   * Time-to-live of the state's values, as Flink's `StateTtlConfig`: a value not written (or,
   * with `update: 'on-read-and-write'`, not read either) for `ttlMs` of processing time has
   * expired and is never returned again. List state expires element by element, map state entry
   * by entry. See {@link StateTtlOptions}.
   * @default no TTL: values live until cleared
   * @example
   * const lastSeen = valueState<number>('last-seen', { ttl: { ttlMs: 24 * 3600_000 } })
   * const recent = listState<string>('recent', { ttl: { ttlMs: 60_000, update: 'on-read-and-write' } })
   */
  ttl?: StateTtlOptions
}

/** When the last-access time of a value with TTL moves to now (Flink's `UpdateType`). */
export type StateTtlUpdate = 'on-create-and-write' | 'on-read-and-write'

/** Time-to-live of a keyed state (see `StateOptions.ttl`). */
export interface StateTtlOptions {
  /**
   * How long a value lives after its last access, in milliseconds of processing time (the run's
   * `Clock`): a positive integer. A value whose last access is `ttlMs` or more ago has expired.
   */
  ttlMs: number
  /**
   * Which accesses refresh a value's last-access time: writes only (`update`, `add`, `put`...), or
   * reads as well (`value()`, `get()`, `contains()`, `entries()`...).
   * @default 'on-create-and-write'
   */
  update?: StateTtlUpdate
  /** How expired values are removed besides on read and from snapshots. */
  cleanup?: {
    /**
     * How many entries of the state (keys: a key's whole list or map counts as one) are checked
     * and, if expired, removed at each access to the state, by a cursor that walks all of it over
     * time (stepping past an empty key group counts as one). 0 turns it off: an expired value of
     * a key never read again then stays in memory, but is still left out of snapshots.
     * @default 5
     */
    incremental?: number
  }
}

/** A state's TTL, checked, with its defaults filled in. */
export interface StateTtl {
  readonly ttlMs: number
  readonly update: StateTtlUpdate
  readonly incrementalCleanup: number
}

/** What every state descriptor has: its kind, its name (its id in snapshots) and its serde (undefined: CBOR). */
export interface DescriptorBase<K extends StateKind> {
  readonly kind: K
  readonly name: string
  readonly serde: Serde<unknown> | undefined
  /** The state's time-to-live; undefined (or absent): values live until cleared. */
  readonly ttl?: StateTtl | undefined
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
  // A snapshot encodes and a restore decodes synchronously, between records.
  for (const f of ['encode', 'decode'] as const) rejectAsync(s[f], `state ${name}: serde.${f}`)
  return serde as Serde<unknown>
}

const TTL_KEYS = ['ttlMs', 'update', 'cleanup']
const TTL_UPDATES: readonly unknown[] = ['on-create-and-write', 'on-read-and-write']
/** Most entries incremental cleanup may check per access: far beyond any useful value. */
const MAX_INCREMENTAL_CLEANUP = 1 << 20

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkTtl(name: string, ttl: unknown): StateTtl | undefined {
  if (ttl === undefined) return undefined
  const fail = (what: string): never => {
    throw new JobDefinitionError(`state ${name}: ttl${what}`)
  }
  if (!isPlainObject(ttl)) return fail(` must be an object like { ttlMs: 60000 }, got ${describeValue(ttl)}`)
  for (const k of Object.keys(ttl)) if (!TTL_KEYS.includes(k)) fail(`.${k} is not an option of ttl (options: ${TTL_KEYS.join(', ')})`)
  const ttlMs = ttl['ttlMs']
  // No 2^31-1 ceiling: TTL is compared with the clock, never waited for with a timer.
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    fail(`.ttlMs must be a positive integer number of milliseconds, got ${describeValue(ttlMs)}`)
  }
  const update = ttl['update'] ?? 'on-create-and-write'
  if (!TTL_UPDATES.includes(update)) fail(`.update must be 'on-create-and-write' or 'on-read-and-write', got ${describeValue(update)}`)
  let incrementalCleanup = 5
  const cleanup = ttl['cleanup']
  if (cleanup !== undefined) {
    if (!isPlainObject(cleanup)) fail(`.cleanup must be an object like { incremental: 5 }, got ${describeValue(cleanup)}`)
    const c = cleanup as Record<string, unknown>
    for (const k of Object.keys(c)) if (k !== 'incremental') fail(`.cleanup.${k} is not an option of ttl.cleanup (options: incremental)`)
    const n = c['incremental'] ?? incrementalCleanup
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_INCREMENTAL_CLEANUP) {
      fail(`.cleanup.incremental must be an integer from 0 to ${MAX_INCREMENTAL_CLEANUP} (entries checked per access), got ${describeValue(n)}`)
    }
    incrementalCleanup = n as number
  }
  return Object.freeze({ ttlMs: ttlMs as number, update: update as StateTtlUpdate, incrementalCleanup })
}

/** The serde and TTL fields of a descriptor, checked; `ttl` only when one is set. */
function common(name: string, options: StateOptions<unknown>): { serde: Serde<unknown> | undefined; ttl?: StateTtl } {
  const serde = checkSerde(name, options.serde)
  const ttl = checkTtl(name, options.ttl)
  return ttl === undefined ? { serde } : { serde, ttl }
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
  return Object.freeze({ kind: 'value', name, default: options.default, ...common(name, options) })
}

/** Declares a list state. */
export function listState<T>(name: string, options: StateOptions<T> = {}): ListStateDescriptor<T> {
  checkName('list', name)
  return Object.freeze({ kind: 'list', name, ...common(name, options) })
}

/** Declares a map state. Map keys must be CBOR-encodable; the serde, if given, encodes the values. */
export function mapState<K, V>(name: string, options: StateOptions<V> = {}): MapStateDescriptor<K, V> {
  checkName('map', name)
  return Object.freeze({ kind: 'map', name, ...common(name, options) })
}

/**
 * Declares a reducing state.
 * @example
 * const max = reducingState<number>('max', (a, b) => Math.max(a, b))
 */
export function reducingState<T>(name: string, reduce: (a: T, b: T) => T, options: StateOptions<T> = {}): ReducingStateDescriptor<T> {
  checkName('reducing', name)
  if (typeof reduce !== 'function') throw new JobDefinitionError(`state ${name}: reducingState needs a reduce function`)
  rejectAsync(reduce, `state ${name}: the reduce function`)
  return Object.freeze({ kind: 'reducing', name, reduce, ...common(name, options) })
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
    rejectAsync(aggregator[fn], `state ${name}: ${fn}`)
  }
  return Object.freeze({ kind: 'aggregating', name, aggregator, ...common(name, options) })
}

export function isStateDescriptor(value: unknown): value is StateDescriptor {
  if (typeof value !== 'object' || value === null) return false
  const kind = (value as { kind?: unknown }).kind
  return kind === 'value' || kind === 'list' || kind === 'map' || kind === 'reducing' || kind === 'aggregating'
}
