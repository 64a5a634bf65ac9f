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
import type { BroadcastContext } from '../api/contexts.ts'
import type { BroadcastSpec } from '../api/graph.ts'
import type { BroadcastWire, OperatorChunk } from './operator-state.ts'
import { deepFreeze, unserializableIn } from './checks.ts'
import type { MapState, MapStateDescriptor } from '../api/state.ts'

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
