/**
 * The handles of a state with TTL (docs/architecture.md section 14): one class per kind over the
 * heap backend's table, storing `Stamped` values (actors/state/ttl.ts), checking expiry on every
 * access and running the incremental cleanup; strict mode freezes what they return.
 */
import type { Clock } from '../time/clock.ts'
import { JobDefinitionError } from '../errors.ts'
import { deepFreeze } from './checks.ts'
import { Cleaner, expired, identity, liveOf, stamp, type Stamped, type TtlTable } from './ttl.ts'
import type {
  AggregatingState,
  AggregatingStateDescriptor,
  ListState,
  MapState,
  ReducingState,
  ReducingStateDescriptor,
  StateTtl,
  ValueState,
  ValueStateDescriptor,
} from '../api/state.ts'

const EMPTY: readonly unknown[] = Object.freeze([])

/** What every TTL handle shares: the table, the TTL, the clock, the cleanup. */
abstract class TtlHandle {
  protected readonly ttlMs: number
  protected readonly onRead: boolean
  private readonly cleaner: Cleaner | undefined

  constructor(
    protected readonly t: TtlTable,
    protected readonly ttl: StateTtl,
    private readonly clock: Clock,
    protected readonly freeze: <T>(v: T) => T,
  ) {
    this.ttlMs = ttl.ttlMs
    this.onRead = ttl.update === 'on-read-and-write'
    this.cleaner = ttl.incrementalCleanup > 0 ? new Cleaner(t, ttl) : undefined
  }

  /** The time of this access; runs the incremental cleanup first. */
  protected access(): number {
    const now = this.clock.now()
    // A NaN time would never expire anything and would be written into snapshots.
    if (!Number.isFinite(now)) {
      throw new JobDefinitionError(`state ${this.t.descriptor.name}: the clock returned ${String(now)}; a Clock's now() must return milliseconds as a finite number`)
    }
    this.cleaner?.run(now)
    return now
  }

  /** The current key's stamped value if it has not expired; an expired one is removed. */
  protected liveStamped(now: number): Stamped | undefined {
    const s = this.t.read() as Stamped | undefined
    if (s === undefined) return undefined
    if (expired(s.ts, this.ttlMs, now)) {
      this.t.remove()
      return undefined
    }
    return s
  }

  /** `liveStamped`, refreshed when reads count as accesses. */
  protected readStamped(now: number): Stamped | undefined {
    const s = this.liveStamped(now)
    if (s === undefined || !this.onRead || s.ts === now) return s
    const fresh = stamp(s.value, now)
    this.t.write(fresh)
    return fresh
  }

  clear(): void {
    this.access()
    this.t.remove()
  }
}

class TtlValueHandle extends TtlHandle implements ValueState<unknown> {
  value(): unknown {
    const s = this.readStamped(this.access())
    // The default is frozen too in strict mode, as the backend's strict value handle does.
    return this.freeze(s === undefined ? (this.t.descriptor as ValueStateDescriptor<unknown>).default : s.value)
  }
  update(value: unknown): void {
    const now = this.access()
    if (value === undefined) this.t.remove()
    else this.t.write(stamp(value, now))
  }
}

class TtlListHandle extends TtlHandle implements ListState<unknown> {
  /** The current key's live elements, expired ones removed from the store, refreshed on read. */
  private live(now: number, read: boolean): Stamped[] | undefined {
    const list = this.t.read() as Stamped[] | undefined
    if (list === undefined) return undefined
    let live = liveOf('list', list, this.ttlMs, now) as Stamped[] | undefined
    if (read && this.onRead && live !== undefined) live = live.map((e) => (e.ts === now ? e : stamp(e.value, now)))
    if (live === undefined) this.t.remove()
    else if (live !== list) this.t.write(live)
    return live
  }
  get(): readonly unknown[] {
    const live = this.live(this.access(), true)
    return live === undefined ? EMPTY : this.freeze(live.map((e) => e.value))
  }
  add(value: unknown): void {
    this.addAll([value])
  }
  // Appends without looking for expired elements (as Flink does): reads, the cleanup and
  // snapshots drop them, so an add stays O(1) on a long list.
  addAll(values: readonly unknown[]): void {
    const now = this.access()
    if (values.length === 0) return
    const list = this.t.read() as Stamped[] | undefined
    if (list === undefined) return this.t.write(values.map((v) => stamp(v, now)))
    // In place, as the backend's list handle does: `touch` saves the list for a snapshot first.
    // The stored array is never handed to user code (get() returns a new one), so strict mode
    // has not frozen it.
    this.t.touch()
    for (const v of values) list.push(stamp(v, now))
  }
  update(values: readonly unknown[]): void {
    const now = this.access()
    if (values.length === 0) this.t.remove()
    else this.t.write(values.map((v) => stamp(v, now)))
  }
}

class TtlMapHandle extends TtlHandle implements MapState<unknown, unknown> {
  /** The current key's map without expired entries (removed from the store), or undefined. */
  private map(now: number): Map<unknown, Stamped> | undefined {
    const m = this.t.read() as Map<unknown, Stamped> | undefined
    if (m === undefined) return undefined
    const live = liveOf('map', m, this.ttlMs, now) as Map<unknown, Stamped> | undefined
    if (live === undefined) this.t.remove()
    else if (live !== m) this.t.write(live)
    return live
  }
  /**
   * The current key's map, to change in place (saved for a snapshot first); created if absent.
   * Expired entries are left for reads, the cleanup and snapshots: a put stays O(1).
   */
  private writable(): Map<unknown, Stamped> {
    const m = this.t.read() as Map<unknown, Stamped> | undefined
    if (m === undefined) {
      const fresh = new Map<unknown, Stamped>()
      this.t.write(fresh)
      return fresh
    }
    this.t.touch()
    return m
  }
  /** Refreshes every entry of `m` read now, when reads count. */
  private refreshAll(m: Map<unknown, Stamped>, now: number): void {
    if (!this.onRead) return
    let stale = false
    for (const e of m.values()) if (e.ts !== now) stale = true
    if (!stale) return
    this.t.touch()
    for (const [k, e] of m) if (e.ts !== now) m.set(k, stamp(e.value, now))
  }
  private entry(key: unknown, now: number): Stamped | undefined {
    const m = this.t.read() as Map<unknown, Stamped> | undefined
    const e = m?.get(key)
    if (e === undefined) return undefined
    if (expired(e.ts, this.ttlMs, now)) {
      this.removeEntry(m!, key)
      return undefined
    }
    if (!this.onRead || e.ts === now) return e
    const fresh = stamp(e.value, now)
    this.writable().set(key, fresh)
    return fresh
  }
  private removeEntry(m: Map<unknown, Stamped>, key: unknown): void {
    if (m.size === 1) this.t.remove()
    else this.writable().delete(key)
  }
  get(key: unknown): unknown {
    const e = this.entry(key, this.access())
    return e === undefined ? undefined : this.freeze(e.value)
  }
  put(key: unknown, value: unknown): void {
    const now = this.access()
    this.writable().set(key, stamp(value, now))
  }
  putAll(entries: Iterable<readonly [unknown, unknown]>): void {
    const now = this.access()
    const given = [...entries]
    if (given.length === 0) return
    const m = this.writable()
    for (const [k, v] of given) m.set(k, stamp(v, now))
  }
  remove(key: unknown): void {
    this.access()
    const m = this.t.read() as Map<unknown, Stamped> | undefined
    if (m !== undefined && m.has(key)) this.removeEntry(m, key)
  }
  contains(key: unknown): boolean {
    return this.entry(key, this.access()) !== undefined
  }
  /** The live entries, unwrapped, as a list taken now (later changes do not show). */
  private snapshotEntries(): [unknown, unknown][] {
    const now = this.access()
    const m = this.map(now)
    if (m === undefined) return []
    this.refreshAll(m, now)
    const out: [unknown, unknown][] = []
    for (const [k, e] of m) out.push([this.freeze(k), this.freeze(e.value)])
    return out
  }
  entries(): IterableIterator<[unknown, unknown]> {
    return this.snapshotEntries().values()
  }
  keys(): IterableIterator<unknown> {
    return this.snapshotEntries()
      .map(([k]) => k)
      .values()
  }
  values(): IterableIterator<unknown> {
    return this.snapshotEntries()
      .map(([, v]) => v)
      .values()
  }
  isEmpty(): boolean {
    return this.map(this.access()) === undefined
  }
}

class TtlReducingHandle extends TtlHandle implements ReducingState<unknown> {
  get(): unknown {
    return this.readStamped(this.access())?.value
  }
  add(value: unknown): void {
    const now = this.access()
    const old = this.liveStamped(now)
    if (old === undefined) return this.t.write(stamp(value, now))
    // A reduce function may change its first argument in place: save it for a snapshot first.
    this.t.touch()
    this.t.write(stamp((this.t.descriptor as ReducingStateDescriptor<unknown>).reduce(old.value, value), now))
  }
}

class TtlAggregatingHandle extends TtlHandle implements AggregatingState<unknown, unknown> {
  private get agg(): AggregatingStateDescriptor<unknown, unknown, unknown>['aggregator'] {
    return (this.t.descriptor as AggregatingStateDescriptor<unknown, unknown, unknown>).aggregator
  }
  get(): unknown {
    const s = this.readStamped(this.access())
    return s === undefined ? undefined : this.agg.getResult(s.value)
  }
  add(value: unknown): void {
    const now = this.access()
    const old = this.liveStamped(now)
    // An aggregator may change the accumulator it is given in place: save it for a snapshot first.
    if (old !== undefined) this.t.touch()
    this.t.write(stamp(this.agg.add(old === undefined ? this.agg.createAccumulator() : old.value, value), now))
  }
}

/**
 * The handle of a state with TTL. `strict`: freeze what value, list and map handles return, as
 * the backend's strict handles do (reducing and aggregating state are not frozen there either).
 */
export function makeTtlHandle(t: TtlTable, ttl: StateTtl, clock: Clock, strict: boolean): unknown {
  const freeze = strict ? deepFreeze : identity
  switch (t.descriptor.kind) {
    case 'value':
      return new TtlValueHandle(t, ttl, clock, freeze)
    case 'list':
      return new TtlListHandle(t, ttl, clock, freeze)
    case 'map':
      return new TtlMapHandle(t, ttl, clock, freeze)
    case 'reducing':
      return new TtlReducingHandle(t, ttl, clock, identity)
    case 'aggregating':
      return new TtlAggregatingHandle(t, ttl, clock, identity)
  }
}
