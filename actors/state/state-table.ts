/**
 * The live side of the heap backend's keyed state: `StateTable`, one state of one operator
 * instance as a Map per key group, and the copy-on-write that keeps a snapshot in progress
 * unchanged by writes. What a snapshot encodes from a table, and what a restore builds, is
 * actors/state/keyed-wire.ts; the handles user code calls are actors/state/heap-handles.ts.
 */
import type { Key } from './key-groups.ts'
import type { StateDescriptor, StateTtl } from '../api/state.ts'

/** One key group of one state: key -> stored value. */
export type Group = Map<Key, unknown>

/** Marks, in a snapshot overlay, a key that did not exist when the snapshot started. */
export const ABSENT = Symbol('absent')

/**
 * What a table reads of the backend that owns it (`HeapKeyedBackend`): the current key and the
 * snapshot marks. An interface, so the table need not import the backend that builds it.
 */
export interface TableOwner {
  /** The key of the record being processed. */
  readonly currentKey: Key
  /** `keyGroup - range.start` of the current key. */
  readonly currentIndex: number
  /** Per key group: 1 while a snapshot still has to encode it. */
  readonly marks: Uint8Array
  /** How many key groups are marked. */
  readonly marked: number
  /** The operator's name, for errors. */
  readonly operator: string
  /** Snapshots started by the backend. */
  readonly snapshots: number
  /** Processing time when the snapshot in progress started. */
  readonly snapshotTime: number
}

/**
 * One state of one operator instance: a Map per key group of the instance's range.
 *
 * While a snapshot still has to encode a key group, the first write to a key of that group saves
 * the key's old value in the group's overlay (copy-on-write per key); encoding reads the live
 * Map through the overlay. A write costs one Map lookup more, never a whole group's encoding.
 */
export class StateTable {
  readonly groups: (Group | undefined)[]
  readonly overlays: (Map<Key, unknown> | undefined)[]
  /** The state's TTL (actors/state/ttl.ts), or undefined. */
  readonly ttl: StateTtl | undefined
  constructor(
    readonly descriptor: StateDescriptor,
    readonly backend: TableOwner,
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
}

function copyValue(d: StateDescriptor, v: unknown): unknown {
  if (d.kind === 'list') return (v as unknown[]).slice()
  if (d.kind === 'map') return new Map(v as Map<unknown, unknown>)
  return typeof v === 'object' && v !== null ? structuredClone(v) : v
}
