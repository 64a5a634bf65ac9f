/**
 * Operator (non-keyed) state, as Flink's operator list state (docs/architecture.md section 16):
 * a list per instance that a non-keyed `process` keeps, and the split states of a rescalable
 * source. On a restore with another parallelism the lists are handed out again:
 *
 * * `split`: the lists of all old instances are concatenated (in instance order) and cut into
 *   `parallelism` contiguous parts of sizes that differ by at most one. At the same parallelism
 *   every instance gets its own list back.
 * * `union`: every new instance gets the whole concatenation (at any parallelism).
 *
 * Also the one home of the operator chunk format (kind `operator`, one chunk per instance,
 * index = instance): a source's offset, the operator lists and the broadcast states of one
 * instance, encoded when the snapshot is taken (operator state is small and may be changed in
 * place right after, so it is not encoded later like keyed state).
 */
import type { Serde } from '../../persistence/serde.ts'
import { cborSerde } from '../../persistence/serde.ts'
import { describeValue, JobDefinitionError, rejectAsync, UnserializableStateError } from '../errors.ts'
import { deepFreeze, unserializableIn } from './checks.ts'
import type { ListState } from '../api/state.ts'

/** How an operator list state is handed out on restore: see {@link operatorListState}. */
export type OperatorStateDistribution = 'split' | 'union'

/** Options of {@link operatorListState}. */
export interface OperatorListStateOptions<T> {
  /**
   * `'split'`: on a restore with another parallelism the lists of all old instances are
   * concatenated and split evenly over the new ones. `'union'`: every new instance gets the whole
   * concatenation.
   * @default 'split'
   */
  distribution?: OperatorStateDistribution
  /** How each element is written into snapshots. @default CBOR (cbor-x) */
  serde?: Serde<T>
}

/** A declared operator list state (see {@link operatorListState}). */
export interface OperatorListStateDescriptor<T> {
  readonly kind: 'operator-list'
  readonly name: string
  readonly distribution: OperatorStateDistribution
  readonly serde: Serde<unknown> | undefined
  /** Type marker only. */
  readonly __type?: T
}

/**
 * Declares an operator list state: a list per instance of a non-keyed `process`, redistributed
 * when the operator's parallelism changes across a restore.
 * @example
 * const buffered = operatorListState<Order>('buffered', { distribution: 'split' })
 * orders.process('batch', { state: { buffered } }, (order, ctx) => {
 *   const b = ctx.state(buffered)
 *   b.add(order)
 *   if (b.get().length >= 100) {
 *     ctx.emit([...b.get()])
 *     b.clear()
 *   }
 * })
 */
export function operatorListState<T>(name: string, options: OperatorListStateOptions<T> = {}): OperatorListStateDescriptor<T> {
  if (typeof name !== 'string' || name.length === 0) throw new JobDefinitionError(`operatorListState needs a non-empty name, got ${String(name)}`)
  if (typeof options !== 'object' || options === null) throw new JobDefinitionError(`operator state ${name}: options must be an object`)
  for (const k of Object.keys(options)) {
    if (k !== 'distribution' && k !== 'serde') throw new JobDefinitionError(`operator state ${name}: unknown option ${k} (known: distribution, serde)`)
  }
  const distribution = options.distribution ?? 'split'
  if (distribution !== 'split' && distribution !== 'union') {
    throw new JobDefinitionError(`operator state ${name}: distribution must be 'split' or 'union', got ${describeValue(distribution)}`)
  }
  const serde = options.serde as Partial<Serde<unknown>> | undefined
  if (serde !== undefined && (typeof serde.encode !== 'function' || typeof serde.decode !== 'function')) {
    throw new JobDefinitionError(`operator state ${name}: serde needs encode(value) and decode(bytes) functions`)
  }
  for (const f of ['encode', 'decode'] as const) rejectAsync(serde?.[f], `operator state ${name}: serde.${f}`)
  return Object.freeze({ kind: 'operator-list', name, distribution, serde: serde as Serde<unknown> | undefined })
}

export function isOperatorListStateDescriptor(value: unknown): value is OperatorListStateDescriptor<unknown> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'operator-list'
}

/** What user code sees in a non-keyed `process` function. */
export interface OperatorContext<OUT> {
  /** The operator instance (subtask) index. */
  readonly instance: number
  /** The event time of the record in hand; undefined when the stream has no event time. Emitted records carry it on. */
  readonly timestamp: number | undefined
  /** The list of a declared operator state, this instance's share. */
  state<T>(descriptor: OperatorListStateDescriptor<T>): ListState<T>
  /** Sends a record downstream. */
  emit(record: OUT): void
}

/** The function of a non-keyed operator, called once per record; synchronous, like a keyed one. */
export type OperatorProcessFunction<T, OUT> = (record: T, ctx: OperatorContext<OUT>) => void

/** What a non-keyed `process` declares. */
export interface OperatorProcessOptions {
  /** Number of parallel instances. @default the job's parallelism */
  parallelism?: number
  /** The operator list states the function uses, by any names. */
  state?: Record<string, OperatorListStateDescriptor<unknown>>
}

/** Checks the `state` option of a non-keyed process; returns the descriptors. */
export function checkOperatorStates(states: unknown, job: string, operator: string): OperatorListStateDescriptor<unknown>[] {
  const declared: OperatorListStateDescriptor<unknown>[] = []
  if (states === undefined) return declared
  if (typeof states !== 'object' || states === null) throw new JobDefinitionError('state must be an object of operator state descriptors, e.g. { state: { buffered } }', job, operator)
  for (const [k, d] of Object.entries(states)) {
    if (!isOperatorListStateDescriptor(d)) {
      const kind = (d as { kind?: unknown })?.kind
      const hint = typeof kind === 'string' ? ` (${kind} state is keyed: keyBy the stream first)` : ''
      throw new JobDefinitionError(`state.${k} is not an operator state descriptor; a non-keyed process keeps operatorListState(...)${hint}`, job, operator)
    }
    if (declared.some((o) => o.name === d.name)) throw new JobDefinitionError(`two states are named ${d.name}`, job, operator)
    declared.push(d)
  }
  return declared
}

// ---------------------------------------------------------------------------------------------
// Redistribution (pure)

/**
 * Cuts `items` into `parts` contiguous parts whose sizes differ by at most one, the larger ones
 * first: 7 items over 3 parts are 3, 2, 2.
 */
export function splitEvenly<T>(items: readonly T[], parts: number): T[][] {
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`parts must be a positive integer, got ${parts}`)
  const base = Math.floor(items.length / parts)
  const extra = items.length % parts
  const out: T[][] = []
  let at = 0
  for (let i = 0; i < parts; i++) {
    const size = base + (i < extra ? 1 : 0)
    out.push(items.slice(at, at + size))
    at += size
  }
  return out
}

/**
 * The lists the `parallelism` new instances get from the lists of the old instances (`old[i]` of
 * old instance `i`). `split` at the same parallelism keeps each instance's own list.
 */
export function redistribute<T>(old: readonly (readonly T[])[], distribution: OperatorStateDistribution, parallelism: number): T[][] {
  if (distribution === 'split' && old.length === parallelism) return old.map((l) => [...l])
  const all = old.flat() as T[]
  if (distribution === 'union') return Array.from({ length: parallelism }, () => [...all])
  return splitEvenly(all, parallelism)
}

// ---------------------------------------------------------------------------------------------
// The operator chunk (kind `operator`, one per instance)

/** One operator list in a chunk: its elements as written (CBOR values, or bytes of its serde). */
export interface OperatorListWire {
  name: string
  distribution: OperatorStateDistribution
  items: unknown[]
}

/** One broadcast map state in a chunk: flat `[key, value, key, value, ...]`, values as written. */
export interface BroadcastWire {
  name: string
  entries: unknown[]
}

/** What one instance's operator chunk holds (format 2). */
export interface OperatorChunk {
  /** A source's offset, as its reader returned it. */
  offset?: unknown
  /** A rescalable source's split states (the array its reader returned from `offset()`). */
  splits?: unknown[]
  lists?: OperatorListWire[]
  broadcast?: BroadcastWire[]
}

/**
 * Format of an operator chunk. 1: CBOR of a source's offset (still read). 2: CBOR of an
 * {@link OperatorChunk}.
 */
export const OPERATOR_CHUNK_FORMAT = 2

const codec = cborSerde<unknown>()
const EMPTY = new Uint8Array(0)

/** Encodes a chunk; an empty one (nothing to keep) is zero bytes, still written for the manifest. */
export function encodeOperatorChunk(chunk: OperatorChunk): Uint8Array {
  const out: Record<string, unknown> = {}
  if (chunk.offset !== undefined) out.offset = chunk.offset
  if (chunk.splits !== undefined) out.splits = chunk.splits
  if (chunk.lists !== undefined && chunk.lists.length > 0) out.lists = chunk.lists
  if (chunk.broadcast !== undefined && chunk.broadcast.length > 0) out.broadcast = chunk.broadcast
  return Object.keys(out).length === 0 ? EMPTY : codec.encode(out)
}

/** Decodes a chunk of format 1 or 2; throws on a newer format or a malformed payload. */
export function decodeOperatorChunk(format: number, data: Uint8Array): OperatorChunk {
  if (format > OPERATOR_CHUNK_FORMAT) throw new Error(`operator chunk format ${format} is newer than this Weir reads`)
  if (data.byteLength === 0) return {}
  const value = codec.decode(data)
  if (format === 1) return { offset: value }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('operator chunk of format 2 does not hold an object')
  const c = value as OperatorChunk
  if (c.splits !== undefined && !Array.isArray(c.splits)) throw new Error('operator chunk: splits is not an array')
  if (c.lists !== undefined && !(Array.isArray(c.lists) && c.lists.every((l) => typeof l?.name === 'string' && Array.isArray(l.items)))) throw new Error('operator chunk: malformed lists')
  if (c.broadcast !== undefined && !(Array.isArray(c.broadcast) && c.broadcast.every((b) => typeof b?.name === 'string' && Array.isArray(b.entries)))) throw new Error('operator chunk: malformed broadcast states')
  return c
}

/** The chunk of a source instance: its offset, or its split states if the source is rescalable. */
export function sourceChunk(operator: string, offset: unknown, rescalable: boolean): Uint8Array {
  if (!rescalable) return offset === undefined ? EMPTY : encodeOperatorChunk({ offset })
  if (!Array.isArray(offset)) {
    throw new Error(`source ${operator} is rescalable, so offset() must return the list of its split states (an array), got ${describeValue(offset)}`)
  }
  return encodeOperatorChunk({ splits: offset })
}

/**
 * The offset to hand to `restore()` of source instance `index` of `parallelism`, from the old
 * instances' chunks; `undefined`: nothing to restore. A rescalable source gets its share of all
 * split states (`split` distribution), an empty list included; any other gets its own offset.
 */
export function sourceRestoreOffset(old: readonly (OperatorChunk | undefined)[], index: number, parallelism: number, rescalable: boolean): { offset: unknown } | undefined {
  const written = old.filter((c): c is OperatorChunk => c !== undefined && (c.offset !== undefined || c.splits !== undefined))
  if (rescalable && written.length > 0 && written.length === old.length && written.every((c) => c.splits !== undefined)) {
    return { offset: redistribute(written.map((c) => c.splits!), 'split', parallelism)[index]! }
  }
  if (old.length !== parallelism && old.length > 0) {
    // checkLayout refuses this for sources that cannot rescale; a rescalable one lands here only
    // if the snapshot was taken before it was rescalable.
    throw new Error(`the snapshot holds offsets of ${old.length} instances written when the source was not rescalable (no split list); restore it with parallelism ${old.length}`)
  }
  const own = old[index]
  if (own === undefined) return undefined
  if (own.splits !== undefined) return { offset: own.splits }
  return own.offset === undefined ? undefined : { offset: own.offset }
}

/** Checks `Sink.operatorState`: an array of operator list state descriptors with distinct names. */
export function checkSinkStates(states: unknown, job: string, operator: string): void {
  if (states === undefined) return
  if (!Array.isArray(states)) throw new JobDefinitionError('sink operatorState must be an array of operatorListState(...) descriptors', job, operator)
  checkOperatorStates(Object.fromEntries(states.map((d: unknown, i) => [String(i), d])), job, operator)
}

// ---------------------------------------------------------------------------------------------
// The lists of one instance

class OperatorListHandle implements ListState<unknown> {
  items: unknown[] = []
  constructor(private readonly strict: boolean) {}
  get(): readonly unknown[] {
    return this.strict ? deepFreeze(this.items) : this.items
  }
  add(value: unknown): void {
    // A list that get() froze (strict mode) is copied before it changes.
    if (Object.isFrozen(this.items)) this.items = [...this.items]
    this.items.push(value)
  }
  addAll(values: readonly unknown[]): void {
    if (Object.isFrozen(this.items)) this.items = [...this.items]
    for (const v of values) this.items.push(v)
  }
  update(values: readonly unknown[]): void {
    this.items = [...values]
  }
  clear(): void {
    this.items = []
  }
}

/** The operator lists of one instance: handles for user code, snapshot and restore. */
export class OperatorListStates {
  private readonly handles = new Map<OperatorListStateDescriptor<unknown>, OperatorListHandle>()

  constructor(
    readonly descriptors: readonly OperatorListStateDescriptor<unknown>[],
    private readonly operator: string,
    strict = false,
  ) {
    for (const d of descriptors) this.handles.set(d, new OperatorListHandle(strict))
  }

  /** The handle of a declared state; a clear error for one that was not declared. */
  handle(descriptor: OperatorListStateDescriptor<unknown>): ListState<unknown> {
    const h = this.handles.get(descriptor)
    if (h === undefined) {
      throw new JobDefinitionError(`ctx.state(${describeValue((descriptor as { name?: unknown })?.name)}): declare it in process('${this.operator}', { state: { ... } }) as an operatorListState`, undefined, this.operator)
    }
    return h
  }

  /** Every list, encoded now (element by element with the state's serde, else as plain CBOR data). */
  snapshot(): OperatorListWire[] {
    const out: OperatorListWire[] = []
    for (const [d, h] of this.handles) {
      if (h.items.length === 0) continue
      let items: unknown[]
      if (d.serde !== undefined) items = h.items.map((v) => d.serde!.encode(v))
      else {
        for (const v of h.items) {
          const bad = unserializableIn(v)
          if (bad !== undefined) throw new UnserializableStateError(this.operator, d.name, undefined, bad)
        }
        // A copy of the element structure, so a change in place after the snapshot cannot reach it.
        items = codec.decode(codec.encode(h.items)) as unknown[]
      }
      out.push({ name: d.name, distribution: d.distribution, items })
    }
    return out
  }

  /**
   * Restores instance `index` of `parallelism` from the chunks of the old instances: each
   * declared list gets its share by its declared distribution. A list in the snapshot that the
   * operator no longer declares is an error; a declared list the snapshot lacks starts empty.
   */
  restore(old: readonly (OperatorChunk | undefined)[], index: number, parallelism: number): void {
    for (const c of old) {
      for (const l of c?.lists ?? []) {
        if (!this.descriptors.some((d) => d.name === l.name)) throw new Error(`the snapshot holds operator state "${l.name}", which the operator does not declare`)
      }
    }
    for (const d of this.descriptors) {
      const lists = old.map((c) => c?.lists?.find((l) => l.name === d.name)?.items ?? [])
      const mine = redistribute(lists, d.distribution, parallelism)[index]!
      this.handles.get(d)!.items = d.serde === undefined ? mine : mine.map((b) => d.serde!.decode(b as Uint8Array))
    }
  }
}
