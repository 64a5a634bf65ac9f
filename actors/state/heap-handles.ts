/**
 * The handles user code calls on the heap backend's keyed state (`ValueState`, `ListState`, ...),
 * one class per kind over a `StateTable`, and the strict variants that freeze what they return.
 * States with TTL get the handles of actors/state/ttl-handles.ts instead.
 */
import type { Clock } from '../time/clock.ts'
import { deepFreeze } from './checks.ts'
import type { StateTable } from './state-table.ts'
import { makeTtlHandle } from './ttl-handles.ts'
import type {
  AggregatingState,
  AggregatingStateDescriptor,
  ListState,
  MapState,
  ReducingState,
  ReducingStateDescriptor,
  ValueState,
  ValueStateDescriptor,
} from '../api/state.ts'

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

/** The handle of one state, as `HeapKeyedBackend.handle` returns it. */
export function makeHandle(t: StateTable, strict: boolean, clock: Clock): unknown {
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
