/**
 * Broadcast state, as in Flink (docs/architecture.md section 16): a low-volume stream (rules,
 * model parameters) is broadcast to every instance of a keyed operator, which keeps it in map
 * states replicated on each instance. Only the broadcast side writes them (every instance runs
 * the same function on the same records, so the copies stay equal); the keyed side reads them.
 *
 * There is no ordering between the two inputs: a keyed record may be processed before a
 * broadcast record that was produced earlier, and the other way round.
 */
import { WeirError } from '../../persistence/errors.ts'
import { cborSerde } from '../../persistence/serde.ts'
import { asyncResultError, describeValue, JobDefinitionError, UnserializableStateError, UserCodeError } from '../errors.ts'
import type { JobBuilder, ProcessContext, ProcessOptions, Stream, TimerContext } from '../api/streams.ts'
import type { Key } from './key-groups.ts'
import type { BroadcastWire, OperatorChunk } from './operator-state.ts'
import { deepFreeze, unserializableIn } from './checks.ts'
import type { MapState, MapStateDescriptor } from '../api/state.ts'

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

/** What a keyed process connected to a broadcast stream declares: as a keyed process, without messages (not supported here yet). */
export interface BroadcastProcessOptions<K extends Key, OUT> extends Omit<ProcessOptions<K, OUT>, 'onTimer' | 'onMessage' | 'sendsTo'> {
  /** Called when a timer of a key fires, as in a keyed process; it may read broadcast state. */
  onTimer?: (time: number, ctx: KeyedBroadcastTimerContext<K, OUT>) => void
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

/** The broadcast side of a keyed process, in a {@link ProcessSpec} of a job graph. */
export interface BroadcastSpec {
  states: readonly MapStateDescriptor<unknown, unknown>[]
  fn: (record: unknown, ctx: BroadcastContext<unknown>) => void
}

/** Checks the descriptors given to `Stream.broadcast`. */
export function checkBroadcastStates(descriptors: readonly unknown[], job: string): MapStateDescriptor<unknown, unknown>[] {
  if (descriptors.length === 0) throw new JobDefinitionError('broadcast needs at least one map state descriptor, e.g. stream.broadcast(mapState<string, Rule>(\'rules\'))', job)
  const out: MapStateDescriptor<unknown, unknown>[] = []
  for (const d of descriptors) {
    const kind = (d as { kind?: unknown })?.kind
    if (kind !== 'map') throw new JobDefinitionError(`broadcast state must be map state (mapState(...)), got ${typeof kind === 'string' ? `${kind} state` : describeValue(d)}`, job)
    const m = d as MapStateDescriptor<unknown, unknown>
    // As in Flink: a copy that expired on one instance and not yet on another would differ.
    if (m.ttl !== undefined) throw new JobDefinitionError(`broadcast state ${m.name} cannot have a ttl: every instance must keep the same copy; remove entries in processBroadcast instead`, job)
    if (out.some((o) => o.name === m.name)) throw new JobDefinitionError(`two broadcast states are named ${m.name}`, job)
    out.push(m)
  }
  return out
}

/** A stream broadcast to every instance of the keyed operator it is connected to. Made by `Stream.broadcast`. */
export class BroadcastStream<T> {
  /** @internal */
  constructor(
    readonly job: JobBuilder,
    /** @internal */ readonly branches: Stream<T>['branches'],
    /** The broadcast states it fills. */
    readonly states: readonly MapStateDescriptor<unknown, unknown>[],
  ) {}
}

/** A keyed stream connected to a broadcast stream. Made by `KeyedStream.connect`. */
export class BroadcastConnectedStream<T, B, K extends Key> {
  /** @internal */
  constructor(
    private readonly job: JobBuilder,
    private readonly keyed: { branches: Stream<T>['branches']; keySelector: (r: unknown) => K },
    private readonly broadcast: BroadcastStream<B>,
  ) {}

  /**
   * A keyed operator that also receives every broadcast record on every instance.
   * @example
   * const rules = mapState<string, Rule>('rules')
   * const ruleStream = j.source('rules', rulesSource).broadcast(rules)
   * events.keyBy((e) => e.user).connect(ruleStream).process('match', { state: { seen } }, {
   *   processElement(e, ctx) {
   *     const rule = ctx.broadcastState(rules).get(e.type)
   *     if (rule !== undefined && e.amount > rule.limit) ctx.emit({ user: ctx.key, rule: rule.id })
   *   },
   *   processBroadcast(rule, ctx) {
   *     ctx.broadcastState(rules).put(rule.type, rule)
   *   },
   * })
   */
  process<OUT>(name: string, options: BroadcastProcessOptions<K, OUT>, fns: BroadcastProcessFunctions<T, B, K, OUT>): Stream<OUT> {
    return this.job.addBroadcastProcess(
      name,
      options as ProcessOptions,
      fns as unknown as BroadcastProcessFunctions<unknown, unknown, Key, unknown>,
      this.keyed as { branches: Stream<unknown>['branches']; keySelector: (r: unknown) => Key },
      this.broadcast as BroadcastStream<unknown>,
    ) as Stream<OUT>
  }
}

// ---------------------------------------------------------------------------------------------
// Runtime: the broadcast states of one instance

const codec = cborSerde<unknown>()

function readOnly(operator: string, name: string): never {
  throw new JobDefinitionError(
    `broadcast state ${name} is read-only in processElement: change it in processBroadcast, which every instance runs for every broadcast record, so all copies stay the same`,
    undefined,
    operator,
  )
}

class BroadcastMapHandle implements MapState<unknown, unknown> {
  constructor(
    private readonly m: Map<unknown, unknown>,
    private readonly strict: boolean,
  ) {}
  get(key: unknown): unknown {
    return this.strict ? deepFreeze(this.m.get(key)) : this.m.get(key)
  }
  put(key: unknown, value: unknown): void {
    this.m.set(key, value)
  }
  putAll(entries: Iterable<readonly [unknown, unknown]>): void {
    for (const [k, v] of entries) this.m.set(k, v)
  }
  remove(key: unknown): void {
    this.m.delete(key)
  }
  contains(key: unknown): boolean {
    return this.m.has(key)
  }
  *entries(): IterableIterator<[unknown, unknown]> {
    for (const [k, v] of this.m) yield this.strict ? [deepFreeze(k), deepFreeze(v)] : [k, v]
  }
  *keys(): IterableIterator<unknown> {
    for (const k of this.m.keys()) yield this.strict ? deepFreeze(k) : k
  }
  *values(): IterableIterator<unknown> {
    for (const v of this.m.values()) yield this.strict ? deepFreeze(v) : v
  }
  isEmpty(): boolean {
    return this.m.size === 0
  }
  size(): number {
    return this.m.size
  }
  clear(): void {
    this.m.clear()
  }
}

/** The read-only view: same reads, writes throw (for callers without types, or that cast). */
class ReadOnlyBroadcastHandle extends BroadcastMapHandle {
  constructor(
    m: Map<unknown, unknown>,
    strict: boolean,
    private readonly operator: string,
    private readonly name: string,
  ) {
    super(m, strict)
  }
  override put(): void {
    readOnly(this.operator, this.name)
  }
  override putAll(): void {
    readOnly(this.operator, this.name)
  }
  override remove(): void {
    readOnly(this.operator, this.name)
  }
  override clear(): void {
    readOnly(this.operator, this.name)
  }
}

interface Entry {
  descriptor: MapStateDescriptor<unknown, unknown>
  map: Map<unknown, unknown>
  writable: BroadcastMapHandle
  readOnly: ReadOnlyBroadcastHandle
}

/** The broadcast states of one instance of a keyed operator connected to a broadcast stream. */
export class BroadcastStates {
  private readonly entries = new Map<MapStateDescriptor<unknown, unknown>, Entry>()
  private readonly ctx: BroadcastContext<unknown>

  constructor(
    private readonly spec: BroadcastSpec,
    private readonly operator: string,
    private readonly instance: number,
    emit: (record: unknown) => void,
    strict = false,
  ) {
    for (const d of spec.states) {
      const map = new Map<unknown, unknown>()
      this.entries.set(d, { descriptor: d, map, writable: new BroadcastMapHandle(map, strict), readOnly: new ReadOnlyBroadcastHandle(map, strict, operator, d.name) })
    }
    const writable = <MK, MV>(d: MapStateDescriptor<MK, MV>): MapState<MK, MV> => this.entry(d).writable as unknown as MapState<MK, MV>
    this.ctx = { instance, emit, broadcastState: writable }
  }

  private entry(d: unknown): Entry {
    const e = this.entries.get(d as MapStateDescriptor<unknown, unknown>)
    if (e === undefined) {
      throw new JobDefinitionError(`broadcastState(${describeValue((d as { name?: unknown })?.name)}): it is not a state of the broadcast stream connected here; pass it to stream.broadcast(...)`, undefined, this.operator)
    }
    return e
  }

  /** The read-only handle the keyed side gets. */
  readOnly(d: unknown): ReadOnlyBroadcastHandle {
    return this.entry(d).readOnly
  }

  /** Runs `processBroadcast` on a batch of broadcast records; `stamp` sets the event time of what it emits. */
  process(records: readonly unknown[], timestamps: readonly number[] | undefined, stamp: (time: number) => void): void {
    const fn = this.spec.fn
    const ctx = this.ctx
    try {
      for (let i = 0; i < records.length; i++) {
        if (timestamps !== undefined) stamp(timestamps[i]!)
        const returned = fn(records[i], ctx) as unknown
        if (returned !== undefined) {
          const error = asyncResultError(returned, this.operator, this.instance, undefined)
          if (error !== undefined) throw error
        }
      }
    } catch (err) {
      if (err instanceof WeirError) throw err
      throw new UserCodeError(this.operator, this.instance, undefined, err)
    }
  }

  /** Every broadcast state, encoded now: flat key/value arrays, values with the state's serde. */
  snapshot(): BroadcastWire[] {
    const out: BroadcastWire[] = []
    for (const { descriptor: d, map } of this.entries.values()) {
      if (map.size === 0) continue
      const entries: unknown[] = []
      for (const [k, v] of map) {
        if (d.serde === undefined) {
          const bad = unserializableIn(k) ?? unserializableIn(v)
          if (bad !== undefined) throw new UnserializableStateError(this.operator, d.name, k, bad)
        }
        entries.push(k, d.serde === undefined ? v : d.serde.encode(v))
      }
      // A copy of the structure, so a change in place after the snapshot cannot reach it.
      out.push({ name: d.name, entries: d.serde === undefined ? (codec.decode(codec.encode(entries)) as unknown[]) : entries })
    }
    return out
  }

  /**
   * Restores instance `index` from the old instances' chunks: every instance takes the broadcast
   * states of old instance `min(index, oldParallelism - 1)` (all copies are the same). A snapshot
   * without them (taken before the operator had a broadcast input) leaves them empty.
   */
  restore(old: readonly (OperatorChunk | undefined)[], index: number): void {
    if (old.length === 0) return
    const from = old[Math.min(index, old.length - 1)]
    for (const w of from?.broadcast ?? []) {
      const e = [...this.entries.values()].find((x) => x.descriptor.name === w.name)
      if (e === undefined) throw new Error(`the snapshot holds broadcast state "${w.name}", which the operator's broadcast input does not declare`)
      const serde = e.descriptor.serde
      e.map.clear()
      for (let i = 0; i < w.entries.length; i += 2) e.map.set(w.entries[i], serde === undefined ? w.entries[i + 1] : serde.decode(w.entries[i + 1] as Uint8Array))
    }
  }
}
