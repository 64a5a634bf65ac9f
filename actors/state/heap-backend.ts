/**
 * The heap state backend: keyed state in Maps, one Map per state and key group, so a snapshot and
 * a rescale work key group by key group (docs/architecture.md sections 3 and 6).
 *
 * Snapshots are copy-on-write. `startSnapshot` only marks the key groups that hold data;
 * `serializeSome` encodes them a few at a time between batches of records; the first write to a
 * key of a group still marked saves the key's old value for the snapshot. So the synchronous part
 * of a checkpoint is a flag per key group, and a write never changes what the snapshot holds.
 *
 * This file holds the backend itself: the current key, the snapshot's marks and cursor, restore
 * with its checks. The tables and their copy-on-write are actors/state/state-table.ts, the
 * handles actors/state/heap-handles.ts, the wire form of a key group actors/state/keyed-wire.ts.
 */
import { decodeKeyedChunk, encodeKeyedChunk, type KeyedChunkState } from '../../persistence/keyed-chunk.ts'
import { JobDefinitionError, MisplacedKeyError } from '../errors.ts'
import { systemClock, type Clock } from '../time/clock.ts'
import { makeHandle } from './heap-handles.ts'
import { isKey, keyGroupOf, type Key, type KeyGroupRange } from './key-groups.ts'
import { checkWire, fromWire, snapshotWire, ttlGroupFromWire } from './keyed-wire.ts'
import { StateTable } from './state-table.ts'
import type { StateDescriptor } from '../api/state.ts'

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
      const entries = snapshotWire(t, index)
      if (entries === undefined) continue
      states.push(t.ttl === undefined ? { name: t.descriptor.name, kind: t.descriptor.kind, entries } : { name: t.descriptor.name, kind: t.descriptor.kind, entries, ttlMs: t.ttl.ttlMs })
    }
    let data: Uint8Array
    try {
      data = encodeKeyedChunk(states)
    } catch (err) {
      // CBOR refuses functions and symbols and overflows on cycles: name the value instead.
      for (const s of states) {
        const t = this.byName.get(s.name)!
        if (t.descriptor.serde === undefined) checkWire(t, s.entries, s.entries.length)
      }
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
