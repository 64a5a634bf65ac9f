/**
 * The timer store of a keyed operator instance (docs/architecture.md section 17): per key group
 * and time domain, the set of (key, time) timers, plus one min-heap per domain ordered by time
 * for firing. At most one timer per (key, domain, time). Deletion is lazy:
 * a deleted timer stays in the heap and is skipped when it comes up.
 *
 * Snapshots are copy-on-write per key group: `startSnapshot` only keeps a reference to every
 * key group's table and marks the non-empty ones frozen; the first change to a frozen group
 * copies it first. `encodeSome` turns the kept tables into bytes a few at a time.
 *
 * One file (~400 lines) on purpose: the heaps, the per-group tables and their copy-on-write share
 * one invariant (a timer is in its group's table exactly when it is live in the heap), which is
 * easier to check when it is kept in one place.
 */
import { cborSerde } from '../../persistence/serde.ts'
import type { Clock } from './clock.ts'
import { JobDefinitionError, MisplacedKeyError } from '../errors.ts'
import type { TimerService } from '../api/contexts.ts'
import { isKey, keyGroupOf, type Key, type KeyGroupRange } from '../state/key-groups.ts'

/** The two time domains of timers. */
export type TimeDomain = 'event-time' | 'processing-time'

/** Format of a `timers` chunk: CBOR of `{ e: [key, [times]], p: [key, [times]] }` flat pairs. */
export const TIMERS_CHUNK_FORMAT = 1

/** The timers of one key group in one domain: for each key, the set of its times. */
type Table = Map<Key, Set<number>>

/** One key group's timers in both domains. */
interface GroupTimers {
  event: Table
  processing: Table
}

/** A due timer, as `pollDue` returns it. */
export interface DueTimer {
  time: number
  key: Key
  /** Index of the key group within the instance's range. */
  index: number
}

/**
 * A 4-ary min-heap of timers by time, as three parallel arrays (no object per timer: at a
 * million timers that is a million fewer objects for the garbage collector to trace). Four
 * children per node halve the depth, and siblings share cache lines.
 */
class TimerHeap {
  private readonly times: number[] = []
  private readonly keys: Key[] = []
  private readonly indexes: number[] = []

  get size(): number {
    return this.times.length
  }

  /** The earliest time, or undefined when empty. */
  peekTime(): number | undefined {
    return this.times[0]
  }

  peekKey(): Key {
    return this.keys[0]!
  }

  peekIndex(): number {
    return this.indexes[0]!
  }

  push(time: number, key: Key, index: number): void {
    const { times, keys, indexes } = this
    let i = times.length
    times.push(time)
    keys.push(key)
    indexes.push(index)
    while (i > 0) {
      const p = (i - 1) >> 2
      if (times[p]! <= time) break
      times[i] = times[p]!
      keys[i] = keys[p]!
      indexes[i] = indexes[p]!
      i = p
    }
    times[i] = time
    keys[i] = key
    indexes[i] = index
  }

  /** Removes the earliest timer. */
  pop(): void {
    const { times, keys, indexes } = this
    const time = times.pop()!
    const key = keys.pop()!
    const index = indexes.pop()!
    const n = times.length
    if (n === 0) return
    let i = 0
    for (;;) {
      const first = 4 * i + 1
      if (first >= n) break
      let c = first
      const last = Math.min(first + 4, n)
      for (let k = first + 1; k < last; k++) if (times[k]! < times[c]!) c = k
      if (times[c]! >= time) break
      times[i] = times[c]!
      keys[i] = keys[c]!
      indexes[i] = indexes[c]!
      i = c
    }
    times[i] = time
    keys[i] = key
    indexes[i] = index
  }

  clear(): void {
    this.times.length = 0
    this.keys.length = 0
    this.indexes.length = 0
  }
}

/** The key groups one timer snapshot encoded; complete once `encodeSome` returned true. */
export class TimersSnapshot {
  readonly groups: { keyGroup: number; data: Uint8Array }[] = []
  complete = false
  /** @internal the tables as they were at the snapshot, per index of the range. */
  constructor(readonly tables: readonly (GroupTimers | undefined)[]) {}
}

const codec = cborSerde<{ e?: unknown[]; p?: unknown[] }>()

function copyTable(t: Table): Table {
  const out: Table = new Map()
  for (const [k, s] of t) out.set(k, new Set(s))
  return out
}

function tableToWire(t: Table): unknown[] {
  const out: unknown[] = []
  for (const [k, s] of t) out.push(k, [...s])
  return out
}

/** The timers of one keyed operator instance, for the key groups of its range. */
export class TimerStore {
  private groups: (GroupTimers | undefined)[]
  private readonly heaps: Record<TimeDomain, TimerHeap> = { 'event-time': new TimerHeap(), 'processing-time': new TimerHeap() }
  /** 1 for a key group whose table a snapshot in progress still holds (copy before a change). */
  private readonly frozen: Uint8Array
  private current: TimersSnapshot | undefined
  private marked = 0
  private nextIndex = 0
  /** Live timers (registered, not deleted, not fired). */
  private count = 0

  constructor(readonly range: KeyGroupRange) {
    const size = range.end - range.start + 1
    this.groups = new Array<GroupTimers | undefined>(size).fill(undefined)
    this.frozen = new Uint8Array(size)
  }

  /** Live timers in both domains. */
  get size(): number {
    return this.count
  }

  private table(index: number, domain: TimeDomain, create: boolean): Table | undefined {
    if (this.frozen[index] === 1) this.thaw(index)
    let g = this.groups[index]
    if (g === undefined) {
      if (!create) return undefined
      this.groups[index] = g = { event: new Map(), processing: new Map() }
    }
    return domain === 'event-time' ? g.event : g.processing
  }

  /** Copies a frozen group before its first change, so the snapshot keeps the old tables. */
  private thaw(index: number): void {
    this.frozen[index] = 0
    this.marked--
    const g = this.groups[index]!
    this.groups[index] = { event: copyTable(g.event), processing: copyTable(g.processing) }
  }

  /** Every live timer, for tests and tools: [domain, key, time], unordered. Reads only. */
  pending(): [TimeDomain, Key, number][] {
    const out: [TimeDomain, Key, number][] = []
    for (const g of this.groups) {
      if (g === undefined) continue
      g.event.forEach((times, key) => times.forEach((time) => out.push(['event-time', key, time])))
      g.processing.forEach((times, key) => times.forEach((time) => out.push(['processing-time', key, time])))
    }
    return out
  }

  /** Registers a timer; a no-op if (key, domain, time) is already registered. */
  register(domain: TimeDomain, key: Key, index: number, time: number): void {
    const t = this.table(index, domain, true)!
    let s = t.get(key)
    if (s === undefined) t.set(key, (s = new Set()))
    else if (s.has(time)) return
    s.add(time)
    this.count++
    this.heaps[domain].push(time, key, index)
  }

  /** Deletes a timer; a no-op if it is not registered. */
  delete(domain: TimeDomain, key: Key, index: number, time: number): void {
    const g = this.groups[index]
    const peek = g === undefined ? undefined : domain === 'event-time' ? g.event : g.processing
    if (peek?.get(key)?.has(time) !== true) return
    const t = this.table(index, domain, false)!
    const s = t.get(key)!
    s.delete(time)
    if (s.size === 0) t.delete(key)
    this.count--
  }

  /** The time of the earliest live timer of `domain` (skipping deleted ones), if any. */
  earliest(domain: TimeDomain): number | undefined {
    const heap = this.heaps[domain]
    for (;;) {
      const time = heap.peekTime()
      if (time === undefined) return undefined
      if (this.isLive(domain, heap.peekKey(), heap.peekIndex(), time)) return time
      heap.pop()
    }
  }

  private isLive(domain: TimeDomain, key: Key, index: number, time: number): boolean {
    const g = this.groups[index]
    if (g === undefined) return false
    return (domain === 'event-time' ? g.event : g.processing).get(key)?.has(time) === true
  }

  /**
   * Removes and returns the earliest live timer of `domain` with time <= `upTo`, or undefined.
   * The caller fires it; a timer registered while firing for a time <= `upTo` comes up in the
   * same round.
   */
  pollDue(domain: TimeDomain, upTo: number): DueTimer | undefined {
    const heap = this.heaps[domain]
    for (;;) {
      const time = heap.peekTime()
      if (time === undefined || time > upTo) return undefined
      const key = heap.peekKey()
      const index = heap.peekIndex()
      heap.pop()
      if (!this.isLive(domain, key, index, time)) continue
      const t = this.table(index, domain, false)!
      const s = t.get(key)!
      s.delete(time)
      if (s.size === 0) t.delete(key)
      this.count--
      return { time, key, index }
    }
  }

  /** Drops every timer of `domain` (processing-time timers at the end of input). */
  clear(domain: TimeDomain): void {
    for (let i = 0; i < this.groups.length; i++) {
      const g = this.groups[i]
      if (g === undefined) continue
      const t = this.table(i, domain, false)!
      for (const s of t.values()) this.count -= s.size
      t.clear()
    }
    this.heaps[domain].clear()
  }

  /** The synchronous part of a snapshot: keeps references, marks non-empty groups frozen. */
  startSnapshot(): TimersSnapshot {
    if (this.marked !== 0) this.encodeSome(Infinity)
    // Empty groups are left out: the snapshot must not share a table a later timer goes into.
    const tables = new Array<GroupTimers | undefined>(this.groups.length)
    for (let i = 0; i < this.groups.length; i++) {
      const g = this.groups[i]
      if (g !== undefined && (g.event.size > 0 || g.processing.size > 0)) {
        tables[i] = g
        this.frozen[i] = 1
        this.marked++
      }
    }
    const snapshot = new TimersSnapshot(tables)
    this.current = snapshot
    this.nextIndex = 0
    if (this.marked === 0) snapshot.complete = true
    return snapshot
  }

  /** Encodes frozen key groups of the snapshot in progress until `budgetMs` is spent. Returns true when done. */
  encodeSome(budgetMs: number): boolean {
    const snap = this.current
    if (snap === undefined || snap.complete) return true
    const deadline = performance.now() + budgetMs
    const tables = snap.tables
    while (this.nextIndex < tables.length) {
      const i = this.nextIndex++
      const g = tables[i]
      if (g === undefined || (g.event.size === 0 && g.processing.size === 0)) continue
      const data = codec.encode({ e: tableToWire(g.event), p: tableToWire(g.processing) })
      snap.groups.push({ keyGroup: i + this.range.start, data })
      if (this.frozen[i] === 1) {
        this.frozen[i] = 0
        this.marked--
      }
      if (performance.now() >= deadline) break
    }
    if (this.nextIndex >= tables.length) {
      snap.complete = true
      this.current = undefined
      this.marked = 0
      this.frozen.fill(0)
      return true
    }
    return false
  }

  /**
   * Loads one key group's timers. Throws `MisplacedKeyError` on a key that does not hash to
   * `keyGroup` of `maxParallelism`, and an Error on bytes that are not a timers chunk.
   */
  restoreGroup(keyGroup: number, data: Uint8Array, maxParallelism: number): void {
    const index = keyGroup - this.range.start
    if (index < 0 || keyGroup > this.range.end) throw new RangeError(`key group ${keyGroup} is outside ${this.range.start}..${this.range.end}`)
    const wire = codec.decode(data)
    if (typeof wire !== 'object' || wire === null) throw new Error('a timers chunk is not a CBOR map')
    const load = (domain: TimeDomain, flat: unknown): void => {
      if (flat === undefined) return
      if (!Array.isArray(flat) || flat.length % 2 !== 0) throw new Error(`the ${domain} timers of key group ${keyGroup} are not a list of key/times pairs`)
      for (let i = 0; i < flat.length; i += 2) {
        const key = flat[i] as Key
        const actual = isKey(key) ? keyGroupOf(key, maxParallelism) : -1
        if (actual !== keyGroup) throw new MisplacedKeyError(key, keyGroup, actual)
        const times = flat[i + 1] as unknown
        if (!Array.isArray(times)) throw new Error(`the ${domain} timers of a key in key group ${keyGroup} are not a list`)
        for (const t of times) {
          if (typeof t !== 'number' || Number.isNaN(t)) throw new Error(`a ${domain} timer of key group ${keyGroup} has time ${String(t)}`)
          this.register(domain, key, index, t)
        }
      }
    }
    load('event-time', wire.e)
    load('processing-time', wire.p)
  }
}

/** What a {@link KeyedTimerService} needs from its instance: the key in hand and the times. */
export interface TimerOwner {
  /** The key of the record or timer in hand, and its key group's index within the range. */
  readonly currentKey: Key
  readonly currentIndex: number
  readonly clock: Clock
  /** The instance's watermark. */
  readonly watermark: number
}

function checkTime(what: string, time: unknown, infinityOk: boolean): number {
  if (typeof time !== 'number' || Number.isNaN(time) || (!infinityOk && !Number.isFinite(time)) || time === -Infinity) {
    throw new RangeError(`${what} needs a time in ms (a finite number${infinityOk ? ' or Infinity' : ''}), got ${typeof time === 'number' ? String(time) : typeof time}`)
  }
  return time
}

/** `ctx.timers` of a keyed operator: the timers of the key in hand. */
export class KeyedTimerService implements TimerService {
  constructor(
    private readonly owner: TimerOwner,
    /** Undefined when the operator declares no `onTimer`: registering a timer then throws. */
    private readonly store: TimerStore | undefined,
    private readonly operator: string,
  ) {}

  currentProcessingTime(): number {
    return this.owner.clock.now()
  }

  currentWatermark(): number {
    return this.owner.watermark
  }

  private need(): TimerStore {
    if (this.store === undefined) {
      throw new JobDefinitionError(`ctx.timers: declare onTimer in process('${this.operator}', { onTimer: (time, ctx) => ... }) to use timers`, undefined, this.operator)
    }
    return this.store
  }

  registerEventTimeTimer(time: number): void {
    this.need().register('event-time', this.owner.currentKey, this.owner.currentIndex, checkTime('registerEventTimeTimer', time, true))
  }

  registerProcessingTimeTimer(time: number): void {
    this.need().register('processing-time', this.owner.currentKey, this.owner.currentIndex, checkTime('registerProcessingTimeTimer', time, false))
  }

  deleteEventTimeTimer(time: number): void {
    this.need().delete('event-time', this.owner.currentKey, this.owner.currentIndex, checkTime('deleteEventTimeTimer', time, true))
  }

  deleteProcessingTimeTimer(time: number): void {
    this.need().delete('processing-time', this.owner.currentKey, this.owner.currentIndex, checkTime('deleteProcessingTimeTimer', time, false))
  }
}
