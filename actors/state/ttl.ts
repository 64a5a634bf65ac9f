/**
 * State time-to-live (docs/architecture.md section 14), as Flink's `StateTtlConfig`: a value of a
 * state with TTL is stored with the processing time of its last access, is never returned once
 * `ttlMs` has passed since then, and is removed when read, by a cleanup cursor that walks a few
 * entries of the state per access, and from snapshots as they are written. List state expires
 * element by element and map state entry by entry, each with its own time.
 *
 * States without TTL never reach this file: their handles and their snapshot path are the heap
 * backend's own, so TTL costs them nothing per record.
 */
import type { Serde } from '../../persistence/serde.ts'
import type { Clock } from '../time/clock.ts'
import type { Key } from './key-groups.ts'
import { JobDefinitionError } from '../errors.ts'
import { deepFreeze } from './checks.ts'
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

/**
 * A value with TTL as the heap backend stores it (list state: each element; map state: each
 * entry's value). Never changed once made: a refresh writes a new one, so a snapshot's
 * copy-on-write (which copies lists and maps shallowly) keeps the old time.
 */
export interface Stamped {
  readonly value: unknown
  /** Processing time of the last access that counts (see `StateTtl.update`), in ms. */
  readonly ts: number
}

/** What the TTL handles and the cleanup need of the backend's table of one state. */
export interface TtlTable {
  readonly descriptor: StateDescriptor
  readonly groups: readonly (Map<Key, unknown> | undefined)[]
  /** The current key's stored value. */
  read(): unknown
  /** Replaces the current key's stored value (saving the old one for a snapshot in progress). */
  write(value: unknown): void
  /** Call before changing the current key's list or map in place. */
  touch(): void
  remove(): void
  /** `write` for any key of the range: key group index `i` (from the range's start). */
  writeAt(i: number, key: Key, value: unknown): void
  /** `remove` for any key of the range. */
  removeAt(i: number, key: Key): void
}

/** Whether a value stamped at `ts` has expired at `now` (Flink: `ts + ttl <= now`). */
export function expired(ts: number, ttlMs: number, now: number): boolean {
  return now - ts >= ttlMs
}

function stamp(value: unknown, now: number): Stamped {
  return { value, ts: now }
}

const EMPTY: readonly unknown[] = Object.freeze([])
const identity = <T>(v: T): T => v
/** An element left out on restore. */
const DROP = Symbol('drop')

/**
 * The live part of a stored value at `now`: the value itself if nothing in it expired, a new
 * list or map without the expired elements or entries, or undefined if all of it expired.
 */
function liveOf(kind: StateDescriptor['kind'], stored: unknown, ttlMs: number, now: number): unknown {
  if (kind === 'list') {
    const list = stored as Stamped[]
    let live = 0
    for (const e of list) if (!expired(e.ts, ttlMs, now)) live++
    if (live === list.length) return list
    return live === 0 ? undefined : list.filter((e) => !expired(e.ts, ttlMs, now))
  }
  if (kind === 'map') {
    const map = stored as Map<unknown, Stamped>
    let live = 0
    for (const e of map.values()) if (!expired(e.ts, ttlMs, now)) live++
    if (live === map.size) return map
    if (live === 0) return undefined
    const out = new Map<unknown, Stamped>()
    for (const [k, e] of map) if (!expired(e.ts, ttlMs, now)) out.set(k, e)
    return out
  }
  return expired((stored as Stamped).ts, ttlMs, now) ? undefined : stored
}

/**
 * Incremental cleanup: a cursor over the state's key groups and their entries that checks
 * `incrementalCleanup` entries per access and removes (or trims) the expired ones. Map iterators
 * stay valid while entries are deleted or added, so the walk goes on across accesses.
 */
class Cleaner {
  private group = 0
  // Keys, not entries: no [key, value] array per step.
  private iterator: IterableIterator<Key> | undefined
  private iterating: Map<Key, unknown> | undefined

  constructor(
    private readonly t: TtlTable,
    private readonly ttl: StateTtl,
  ) {}

  run(now: number): void {
    const groups = this.t.groups
    // Moving on to the next key group counts as a check too, so an access costs at most
    // `incrementalCleanup` steps however many key groups are empty.
    for (let steps = this.ttl.incrementalCleanup; steps > 0; steps--) {
      if (this.iterator === undefined || this.iterating !== groups[this.group]) {
        const g = groups[this.group]
        if (g === undefined || g.size === 0) {
          this.group = (this.group + 1) % groups.length
          this.iterator = undefined
          continue
        }
        this.iterating = g
        this.iterator = g.keys()
      }
      const next = this.iterator.next()
      if (next.done === true) {
        this.iterator = undefined
        this.group = (this.group + 1) % groups.length
        continue
      }
      const key = next.value
      const stored = this.iterating!.get(key)
      const live = liveOf(this.t.descriptor.kind, stored, this.ttl.ttlMs, now)
      if (live === undefined) this.t.removeAt(this.group, key)
      else if (live !== stored) this.t.writeAt(this.group, key, live)
    }
  }
}

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

// Snapshots (docs/architecture.md section 14). In a chunk, a state with TTL is marked with its
// `ttlMs`, and each value (list: each element; map: each entry's value) is written as the pair
// `[value, ts]`, the value encoded by the state's serde if it has one.

/**
 * The wire form of a stored value at snapshot time `now`, or undefined when all of it expired
 * (the key is then left out of the snapshot).
 */
export function ttlToWire(d: StateDescriptor, ttlMs: number, stored: unknown, now: number): unknown {
  const live = liveOf(d.kind, stored, ttlMs, now)
  if (live === undefined) return undefined
  const serde = d.serde
  const pair = serde === undefined ? (e: Stamped) => [e.value, e.ts] : (e: Stamped) => [serde.encode(e.value), e.ts]
  if (d.kind === 'list') return (live as Stamped[]).map(pair)
  if (d.kind === 'map') {
    const out = new Map<unknown, unknown>()
    for (const [k, e] of live as Map<unknown, Stamped>) out.set(k, pair(e))
    return out
  }
  return pair(live as Stamped)
}

/** A `[value, ts]` pair of a chunk, checked (a chunk is data from disk: its shape is not trusted). */
function pairOf(state: string, w: unknown): [unknown, number] {
  if (!Array.isArray(w) || w.length !== 2 || typeof w[1] !== 'number' || !Number.isFinite(w[1])) {
    throw new Error(`state "${state}" is marked as having TTL in the snapshot but holds a value that is not a [value, time] pair`)
  }
  return w as [unknown, number]
}

/**
 * One wire value of a chunk as the state declared now stores it, or undefined when nothing of it
 * is left. Handles the four cases of TTL in the chunk (`chunkTtlMs`, undefined: none) and in the
 * state (`ttl`, undefined: none):
 * * both: the values keep their times; those expired under the state's TTL are dropped;
 * * only the state: a snapshot taken before TTL was turned on; every value is stamped `now`,
 *   so it lives `ttlMs` from the restore;
 * * only the chunk: TTL was turned off; values expired under the chunk's TTL are dropped (they
 *   could not be read any more when the snapshot was taken), the others lose their times;
 * * neither: the value as it is (decoded by the serde).
 */
export function ttlFromWire(
  d: StateDescriptor,
  ttl: StateTtl | undefined,
  chunkTtlMs: number | undefined,
  w: unknown,
  now: number,
): unknown {
  const decode: (v: unknown) => unknown = d.serde === undefined ? identity : (v) => (d.serde as Serde<unknown>).decode(v as Uint8Array)
  // Returns the element as stored, or DROP.
  const one = (e: unknown): unknown => {
    if (chunkTtlMs === undefined) return ttl === undefined ? decode(e) : stamp(decode(e), now)
    const [value, ts] = pairOf(d.name, e)
    const limit = ttl === undefined ? chunkTtlMs : ttl.ttlMs
    if (expired(ts, limit, now)) return DROP
    return ttl === undefined ? decode(value) : stamp(decode(value), ts)
  }
  if (d.kind === 'list') {
    if (!Array.isArray(w)) throw new Error(`state "${d.name}" is list state but the snapshot holds a value that is not a list`)
    const out: unknown[] = []
    for (const e of w) {
      const v = one(e)
      if (v !== DROP) out.push(v)
    }
    return out.length === 0 ? undefined : out
  }
  if (d.kind === 'map') {
    if (!(w instanceof Map)) throw new Error(`state "${d.name}" is map state but the snapshot holds a value that is not a map`)
    const out = new Map<unknown, unknown>()
    for (const [k, e] of w as Map<unknown, unknown>) {
      const v = one(e)
      if (v !== DROP) out.set(k, v)
    }
    return out.size === 0 ? undefined : out
  }
  const v = one(w)
  return v === DROP ? undefined : v
}

