/**
 * The heap state backend: keyed state in Maps, one Map per state and key group, so a snapshot and
 * a rescale work key group by key group (docs/architecture.md sections 3 and 6).
 *
 * Snapshots are copy-on-write. `startSnapshot` only marks the key groups that hold data;
 * `serializeSome` encodes them a few at a time between batches of records; the first write to a
 * key of a group still marked saves the key's old value for the snapshot. So the synchronous part
 * of a checkpoint is a flag per key group, and a write never changes what the snapshot holds.
 */
import type { Serde } from '../../persistence/serde.ts'
import { decodeKeyedChunk, encodeKeyedChunk, type KeyedChunkState } from '../../persistence/keyed-chunk.ts'
import { JobDefinitionError, MisplacedKeyError, UnserializableStateError } from '../errors.ts'
import { deepFreeze, unserializableIn } from './checks.ts'
import { makeTtlHandle, ttlFromWire, ttlToWire } from './ttl.ts'
import { systemClock, type Clock } from '../time/clock.ts'
import { isKey, keyGroupOf, type Key, type KeyGroupRange } from './key-groups.ts'
import type {
  AggregatingState,
  AggregatingStateDescriptor,
  ListState,
  MapState,
  ReducingState,
  ReducingStateDescriptor,
  StateDescriptor,
  StateTtl,
  ValueState,
  ValueStateDescriptor,
} from '../api/state.ts'

type Group = Map<Key, unknown>

/** Marks, in a snapshot overlay, a key that did not exist when the snapshot started. */
const ABSENT = Symbol('absent')

/**
 * One state of one operator instance: a Map per key group of the instance's range.
 *
 * While a snapshot still has to encode a key group, the first write to a key of that group saves
 * the key's old value in the group's overlay (copy-on-write per key); encoding reads the live
 * Map through the overlay. A write costs one Map lookup more, never a whole group's encoding.
 */
class StateTable {
  readonly groups: (Group | undefined)[]
  readonly overlays: (Map<Key, unknown> | undefined)[]
  /** The state's TTL (actors/state/ttl.ts), or undefined. */
  readonly ttl: StateTtl | undefined
  constructor(
    readonly descriptor: StateDescriptor,
    readonly backend: HeapKeyedBackend,
    size: number,
  ) {
    this.groups = new Array<Group | undefined>(size).fill(undefined)
    this.overlays = new Array<Map<Key, unknown> | undefined>(size).fill(undefined)
    this.ttl = descriptor.ttl
  }

  read(): unknown {
    return this.groups[this.backend.currentIndex]?.get(this.backend.currentKey)
  }

  /** Saves the current key's value for the snapshot in progress, once. `copy`: the value will change in place. */
  private preserve(i: number, key: Key, copy: boolean): void {
    let o = this.overlays[i]
    if (o === undefined) this.overlays[i] = o = new Map()
    if (o.has(key)) return
    const old = this.groups[i]?.get(key)
    o.set(key, old === undefined ? ABSENT : copy ? copyValue(this.descriptor, old) : old)
  }

  /** Call before changing the current key's value in place (list append, map put). */
  touch(): void {
    const b = this.backend
    if (b.marked !== 0 && b.marks[b.currentIndex] === 1) this.preserve(b.currentIndex, b.currentKey, true)
  }

  write(value: unknown): void {
    const b = this.backend
    const i = b.currentIndex
    if (b.marked !== 0 && b.marks[i] === 1) this.preserve(i, b.currentKey, false)
    let g = this.groups[i]
    if (g === undefined) this.groups[i] = g = new Map()
    g.set(b.currentKey, value)
  }

  remove(): void {
    const b = this.backend
    const i = b.currentIndex
    const g = this.groups[i]
    if (g === undefined || !g.has(b.currentKey)) return
    if (b.marked !== 0 && b.marks[i] === 1) this.preserve(i, b.currentKey, false)
    g.delete(b.currentKey)
  }

  /** `write` for any key of key group index `i` (TTL cleanup). */
  writeAt(i: number, key: Key, value: unknown): void {
    const b = this.backend
    if (b.marked !== 0 && b.marks[i] === 1) this.preserve(i, key, false)
    let g = this.groups[i]
    if (g === undefined) this.groups[i] = g = new Map()
    g.set(key, value)
  }

  /** `remove` for any key of key group index `i` (TTL cleanup). */
  removeAt(i: number, key: Key): void {
    const b = this.backend
    const g = this.groups[i]
    if (g === undefined || !g.has(key)) return
    if (b.marked !== 0 && b.marks[i] === 1) this.preserve(i, key, false)
    g.delete(key)
  }

  /**
   * The group's entries as the snapshot in progress saw them, in wire form (see `toWire`), read
   * through the overlay without building another Map; drops the overlay.
   */
  snapshotWire(i: number): unknown[] | undefined {
    const g = this.groups[i]
    const o = this.overlays[i]
    this.overlays[i] = undefined
    if ((g === undefined || g.size === 0) && (o === undefined || o.size === 0)) return undefined
    const serde = this.descriptor.serde
    const d = this.descriptor
    if (this.ttl !== undefined) return this.snapshotTtlWire(g, o)
    // Sized up front (and trimmed after): growing by push would reallocate a large array many times.
    const out = new Array<unknown>(((g?.size ?? 0) + (o?.size ?? 0)) * 2)
    let n = 0
    // forEach, not for-of: no [key, value] array per entry.
    if (g !== undefined) {
      g.forEach((v, k) => {
        if (o !== undefined && o.has(k)) return
        out[n++] = k
        out[n++] = serde === undefined ? v : encodeValue(d, serde, v)
      })
    }
    if (o !== undefined) {
      o.forEach((v, k) => {
        if (v === ABSENT) return
        out[n++] = k
        out[n++] = serde === undefined ? v : encodeValue(d, serde, v)
      })
    }
    out.length = n
    if (n === 0) return undefined
    if (serde === undefined) this.checkWire(out, this.backend.snapshots === 1 ? n : 2)
    return out
  }

  /** `snapshotWire` of a state with TTL: values in `[value, time]` pairs, expired ones left out. */
  private snapshotTtlWire(g: Group | undefined, o: Map<Key, unknown> | undefined): unknown[] | undefined {
    const d = this.descriptor
    const ttlMs = this.ttl!.ttlMs
    const now = this.backend.snapshotTime
    const out: unknown[] = []
    const add = (v: unknown, k: Key): void => {
      const w = ttlToWire(d, ttlMs, v, now)
      if (w !== undefined) out.push(k, w)
    }
    g?.forEach((v, k) => {
      if (o === undefined || !o.has(k)) add(v, k)
    })
    o?.forEach((v, k) => {
      if (v !== ABSENT) add(v, k)
    })
    if (out.length === 0) return undefined
    if (d.serde === undefined) this.checkWire(out, this.backend.snapshots === 1 ? out.length : 2)
    return out
  }

  /**
   * Throws `UnserializableStateError` if one of the first `upTo / 2` values of a wire array is
   * something CBOR cannot round-trip. The first snapshot of an attempt checks every value (one
   * walk per attempt); later ones check the first value of each key group, so a state whose
   * values changed shape is still caught soon, at a cost per group, not per key.
   */
  checkWire(wire: readonly unknown[], upTo: number): void {
    for (let i = 0; i < upTo; i += 2) {
      const problem = unserializableIn(wire[i + 1])
      if (problem !== undefined) throw new UnserializableStateError(this.backend.operator, this.descriptor.name, wire[i], problem)
    }
  }
}

function copyValue(d: StateDescriptor, v: unknown): unknown {
  if (d.kind === 'list') return (v as unknown[]).slice()
  if (d.kind === 'map') return new Map(v as Map<unknown, unknown>)
  return typeof v === 'object' && v !== null ? structuredClone(v) : v
}

class ValueHandle implements ValueState<unknown> {
  constructor(private readonly t: StateTable) {}
  value(): unknown {
    const v = this.t.read()
    return v === undefined ? (this.t.descriptor as ValueStateDescriptor<unknown>).default : v
  }
  update(value: unknown): void {
    if (value === undefined) this.t.remove()
    else this.t.write(value)
  }
  clear(): void {
    this.t.remove()
  }
}

const EMPTY: readonly unknown[] = Object.freeze([])

class ListHandle implements ListState<unknown> {
  constructor(private readonly t: StateTable) {}
  get(): readonly unknown[] {
    return (this.t.read() as unknown[] | undefined) ?? EMPTY
  }
  // Appending in place is safe: `touch` encodes a key group a snapshot still needs first.
  add(value: unknown): void {
    const list = this.t.read() as unknown[] | undefined
    if (list === undefined) this.t.write([value])
    else {
      this.t.touch()
      list.push(value)
    }
  }
  addAll(values: readonly unknown[]): void {
    if (values.length === 0) return
    const list = this.t.read() as unknown[] | undefined
    if (list === undefined) this.t.write([...values])
    else {
      this.t.touch()
      for (const v of values) list.push(v)
    }
  }
  update(values: readonly unknown[]): void {
    if (values.length === 0) this.t.remove()
    else this.t.write([...values])
  }
  clear(): void {
    this.t.remove()
  }
}

class MapHandle implements MapState<unknown, unknown> {
  constructor(private readonly t: StateTable) {}
  private map(): Map<unknown, unknown> | undefined {
    return this.t.read() as Map<unknown, unknown> | undefined
  }
  private writable(): Map<unknown, unknown> {
    const m = this.map()
    if (m === undefined) {
      const fresh = new Map<unknown, unknown>()
      this.t.write(fresh)
      return fresh
    }
    this.t.touch()
    return m
  }
  get(key: unknown): unknown {
    return this.map()?.get(key)
  }
  put(key: unknown, value: unknown): void {
    this.writable().set(key, value)
  }
  putAll(entries: Iterable<readonly [unknown, unknown]>): void {
    const m = this.writable()
    for (const [k, v] of entries) m.set(k, v)
  }
  remove(key: unknown): void {
    const m = this.map()
    if (m === undefined || !m.has(key)) return
    if (m.size === 1) this.t.remove()
    else this.writable().delete(key)
  }
  contains(key: unknown): boolean {
    return this.map()?.has(key) ?? false
  }
  entries(): IterableIterator<[unknown, unknown]> {
    return (this.map() ?? new Map()).entries()
  }
  keys(): IterableIterator<unknown> {
    return (this.map() ?? new Map()).keys()
  }
  values(): IterableIterator<unknown> {
    return (this.map() ?? new Map()).values()
  }
  isEmpty(): boolean {
    return (this.map()?.size ?? 0) === 0
  }
  clear(): void {
    this.t.remove()
  }
}

class ReducingHandle implements ReducingState<unknown> {
  private readonly reduce: (a: unknown, b: unknown) => unknown
  constructor(private readonly t: StateTable) {
    this.reduce = (t.descriptor as ReducingStateDescriptor<unknown>).reduce
  }
  get(): unknown {
    return this.t.read()
  }
  add(value: unknown): void {
    const old = this.t.read()
    if (old === undefined) return this.t.write(value)
    // A reduce function may change its first argument in place: save it for a snapshot first.
    this.t.touch()
    this.t.write(this.reduce(old, value))
  }
  clear(): void {
    this.t.remove()
  }
}

class AggregatingHandle implements AggregatingState<unknown, unknown> {
  private readonly agg: AggregatingStateDescriptor<unknown, unknown, unknown>['aggregator']
  constructor(private readonly t: StateTable) {
    this.agg = (t.descriptor as AggregatingStateDescriptor<unknown, unknown, unknown>).aggregator
  }
  get(): unknown {
    const acc = this.t.read()
    return acc === undefined ? undefined : this.agg.getResult(acc)
  }
  add(value: unknown): void {
    const acc = this.t.read()
    // An aggregator may change the accumulator it is given in place: save it for a snapshot first.
    if (acc !== undefined) this.t.touch()
    this.t.write(this.agg.add(acc === undefined ? this.agg.createAccumulator() : acc, value))
  }
  clear(): void {
    this.t.remove()
  }
}

// Strict mode (`RunOptions.strictState`): handles that freeze what they return, so a change in
// place throws where it is made. Separate classes, so the default handles pay nothing.
class StrictValueHandle extends ValueHandle {
  override value(): unknown {
    return deepFreeze(super.value())
  }
}

class StrictListHandle extends ListHandle {
  constructor(private readonly table: StateTable) {
    super(table)
  }
  override get(): readonly unknown[] {
    return deepFreeze(super.get())
  }
  // The stored array may be frozen (it was returned by get()): append to a copy.
  override add(value: unknown): void {
    this.addAll([value])
  }
  override addAll(values: readonly unknown[]): void {
    if (values.length === 0) return
    const list = this.table.read() as unknown[] | undefined
    this.table.write(list === undefined ? [...values] : [...list, ...values])
  }
}

class StrictMapHandle extends MapHandle {
  override get(key: unknown): unknown {
    return deepFreeze(super.get(key))
  }
  override *entries(): IterableIterator<[unknown, unknown]> {
    for (const [k, v] of super.entries()) yield [deepFreeze(k), deepFreeze(v)]
  }
  override *keys(): IterableIterator<unknown> {
    for (const k of super.keys()) yield deepFreeze(k)
  }
  override *values(): IterableIterator<unknown> {
    for (const v of super.values()) yield deepFreeze(v)
  }
}

function makeHandle(t: StateTable, strict: boolean, clock: Clock): unknown {
  if (t.ttl !== undefined) return makeTtlHandle(t, t.ttl, clock, strict)
  if (strict) {
    // Reducing and aggregating state are left as they are: their functions may change the stored
    // value in place (the backend saves it for a snapshot first).
    if (t.descriptor.kind === 'value') return new StrictValueHandle(t)
    if (t.descriptor.kind === 'list') return new StrictListHandle(t)
    if (t.descriptor.kind === 'map') return new StrictMapHandle(t)
  }
  switch (t.descriptor.kind) {
    case 'value':
      return new ValueHandle(t)
    case 'list':
      return new ListHandle(t)
    case 'map':
      return new MapHandle(t)
    case 'reducing':
      return new ReducingHandle(t)
    case 'aggregating':
      return new AggregatingHandle(t)
  }
}

/** The encoded keyed state of one key group. */
export interface KeyGroupBytes {
  keyGroup: number
  data: Uint8Array
}

/** The key groups one snapshot encoded; complete once `serializeSome` returned true. */
export class KeyedSnapshot {
  readonly groups: KeyGroupBytes[] = []
  complete = false
}

/** Options of a {@link HeapKeyedBackend}. */
export interface HeapBackendOptions {
  /** The operator's name, for errors. @default '?' */
  operator?: string
  /** Freeze what handles return (see `RunOptions.strictState`). @default false */
  strictState?: boolean
  /** Processing time, for state TTL (see `StateOptions.ttl`). @default systemClock */
  clock?: Clock
}

/** Keyed state of one operator instance, for the key groups of its range. */
export class HeapKeyedBackend {
  /** The key of the record being processed; set by the instance before user code runs. */
  currentKey: Key = ''
  /** `keyGroup - range.start` of the current key. */
  currentIndex = 0
  /** Per key group: 1 while a snapshot still has to encode it. */
  marks: Uint8Array
  marked = 0
  private readonly tables: StateTable[]
  private readonly byDescriptor = new Map<StateDescriptor, unknown>()
  private readonly byName = new Map<string, StateTable>()
  private current: KeyedSnapshot | undefined
  private cursor = 0
  /** Snapshots started by this backend (one backend lives for one attempt). */
  snapshots = 0
  readonly operator: string
  /** Processing time, for state TTL. */
  readonly clock: Clock
  /** Processing time when the snapshot in progress started: TTL is judged at that instant. */
  snapshotTime = 0

  constructor(
    descriptors: readonly StateDescriptor[],
    readonly range: KeyGroupRange,
    options: HeapBackendOptions = {},
  ) {
    this.operator = options.operator ?? '?'
    const strict = options.strictState === true
    this.clock = options.clock ?? systemClock
    const size = range.end - range.start + 1
    this.marks = new Uint8Array(size)
    this.tables = descriptors.map((d) => {
      if (this.byName.has(d.name)) throw new JobDefinitionError(`two states are named ${d.name}`)
      const t = new StateTable(d, this, size)
      this.byName.set(d.name, t)
      this.byDescriptor.set(d, makeHandle(t, strict, this.clock))
      return t
    })
  }

  /** Points every handle at `key` of key group `keyGroup`. */
  setCurrentKey(key: Key, keyGroup: number): void {
    this.currentKey = key
    this.currentIndex = keyGroup - this.range.start
  }

  /** The handle of a declared state, or undefined if the descriptor was not declared. */
  handle(descriptor: StateDescriptor): unknown {
    return this.byDescriptor.get(descriptor)
  }

  /** Number of keys per state, for logs and tests. */
  keyCount(): number {
    let n = 0
    for (const t of this.tables) for (const g of t.groups) n += g?.size ?? 0
    return n
  }

  /**
   * Starts a snapshot: marks every key group that holds state. A snapshot still being encoded
   * is finished first, so at most one is in flight.
   */
  startSnapshot(): KeyedSnapshot {
    if (this.marked !== 0) this.serializeSome(Infinity)
    const snapshot = new KeyedSnapshot()
    this.snapshots++
    this.snapshotTime = this.clock.now()
    this.current = snapshot
    this.cursor = 0
    for (let i = 0; i < this.marks.length; i++) {
      if (this.tables.some((t) => (t.groups[i]?.size ?? 0) > 0)) {
        this.marks[i] = 1
        this.marked++
      }
    }
    if (this.marked === 0) snapshot.complete = true
    return snapshot
  }

  /** Encodes marked key groups until `budgetMs` is spent. Returns true when none is left. */
  serializeSome(budgetMs: number): boolean {
    const deadline = performance.now() + budgetMs
    while (this.marked !== 0 && this.cursor < this.marks.length) {
      if (this.marks[this.cursor] === 1) {
        this.encodeGroup(this.cursor)
        if (performance.now() >= deadline) break
      }
      this.cursor++
    }
    return this.marked === 0
  }

  /** Encodes one marked key group as it was when the snapshot started. */
  encodeGroup(index: number): void {
    const states: KeyedChunkState[] = []
    for (const t of this.tables) {
      const entries = t.snapshotWire(index)
      if (entries === undefined) continue
      states.push(t.ttl === undefined ? { name: t.descriptor.name, kind: t.descriptor.kind, entries } : { name: t.descriptor.name, kind: t.descriptor.kind, entries, ttlMs: t.ttl.ttlMs })
    }
    let data: Uint8Array
    try {
      data = encodeKeyedChunk(states)
    } catch (err) {
      // CBOR refuses functions and symbols and overflows on cycles: name the value instead.
      for (const s of states) if (this.byName.get(s.name)!.descriptor.serde === undefined) this.byName.get(s.name)!.checkWire(s.entries, s.entries.length)
      throw err
    }
    this.current!.groups.push({ keyGroup: index + this.range.start, data })
    this.marks[index] = 0
    if (--this.marked === 0) this.current!.complete = true
  }

  /**
   * Loads one key group's encoded state. Throws on a state this job does not declare or declares
   * with another kind, and `MisplacedKeyError` on a key that does not hash to `keyGroup` (of
   * `maxParallelism`): a moved chunk must not put keys where no record will ever find them. The
   * executor always passes `maxParallelism`; without it (unit tests of the backend) keys are not checked.
   */
  restoreGroup(keyGroup: number, data: Uint8Array, maxParallelism?: number): void {
    const index = keyGroup - this.range.start
    if (index < 0 || keyGroup > this.range.end) throw new RangeError(`key group ${keyGroup} is outside ${this.range.start}..${this.range.end}`)
    const states = decodeKeyedChunk(data)
    // Checked before anything is loaded; one hash per key, as a record of the key costs.
    if (maxParallelism !== undefined) {
      for (const s of states) {
        for (let i = 0; i < s.entries.length; i += 2) {
          const key = s.entries[i] as Key
          const actual = isKey(key) ? keyGroupOf(key, maxParallelism) : -1
          if (actual !== keyGroup) throw new MisplacedKeyError(key, keyGroup, actual)
        }
      }
    }
    for (const s of states) {
      const t = this.byName.get(s.name)
      if (t === undefined) throw new Error(`the snapshot holds state "${s.name}", which the operator does not declare`)
      if (t.descriptor.kind !== s.kind) {
        throw new Error(`state "${s.name}" is ${t.descriptor.kind} state in the job but ${s.kind} state in the snapshot`)
      }
      t.groups[index] = t.ttl === undefined && s.ttlMs === undefined ? fromWire(t.descriptor, s.entries) : ttlGroupFromWire(t, s.ttlMs, s.entries, this.clock.now())
    }
  }

  /** Every (key, value) of a state, for tests and the offline reader. */
  *entries(stateName: string): IterableIterator<[Key, unknown]> {
    const t = this.byName.get(stateName)
    if (t === undefined) return
    for (const g of t.groups) if (g !== undefined) yield* g.entries()
  }
}

// Wire form of a key group's state: a flat [key, value, key, value...] array; with a custom
// serde each value (list: each element, map: each value) is replaced by its bytes.
function encodeValue(d: StateDescriptor, serde: Serde<unknown>, v: unknown): unknown {
  if (d.kind === 'list') return (v as unknown[]).map((e) => serde.encode(e))
  if (d.kind === 'map') return new Map([...(v as Map<unknown, unknown>)].map(([k, e]) => [k, serde.encode(e)]))
  return serde.encode(v)
}

function decodeValue(d: StateDescriptor, serde: Serde<unknown>, v: unknown): unknown {
  if (d.kind === 'list') return (v as Uint8Array[]).map((e) => serde.decode(e))
  if (d.kind === 'map') return new Map([...(v as Map<unknown, Uint8Array>)].map(([k, e]) => [k, serde.decode(e)]))
  return serde.decode(v as Uint8Array)
}

function fromWire(d: StateDescriptor, entries: readonly unknown[]): Group {
  const g: Group = new Map()
  const serde = d.serde
  for (let i = 0; i < entries.length; i += 2) {
    g.set(entries[i] as Key, serde === undefined ? entries[i + 1] : decodeValue(d, serde, entries[i + 1]))
  }
  return g
}

/** `fromWire` when the state or the chunk has TTL (see `ttlFromWire`): expired values are dropped. */
function ttlGroupFromWire(t: StateTable, chunkTtlMs: number | undefined, entries: readonly unknown[], now: number): Group {
  // A NaN time would be stored as the values' last access and never expire.
  if (!Number.isFinite(now)) throw new Error(`state "${t.descriptor.name}" has TTL and the clock returned ${String(now)}; a Clock's now() must return milliseconds as a finite number`)
  const g: Group = new Map()
  for (let i = 0; i < entries.length; i += 2) {
    const v = ttlFromWire(t.descriptor, t.ttl, chunkTtlMs, entries[i + 1], now)
    if (v !== undefined) g.set(entries[i] as Key, v)
  }
  return g
}
