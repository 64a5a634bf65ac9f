/**
 * State time-to-live (docs/architecture.md section 14), as Flink's `StateTtlConfig`: a value of a
 * state with TTL is stored with the processing time of its last access, is never returned once
 * `ttlMs` has passed since then, and is removed when read, by a cleanup cursor that walks a few
 * entries of the state per access, and from snapshots as they are written. List state expires
 * element by element and map state entry by entry, each with its own time.
 *
 * This file holds what expiry means (stamped values, `expired`, the live part of a value) and the
 * incremental cleanup; the handles are actors/state/ttl-handles.ts, the snapshot form
 * actors/state/ttl-wire.ts. States without TTL never reach these files: their handles and their
 * snapshot path are the heap backend's own, so TTL costs them nothing per record.
 */
import type { Key } from './key-groups.ts'
import type { StateDescriptor, StateTtl } from '../api/state.ts'

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

export function stamp(value: unknown, now: number): Stamped {
  return { value, ts: now }
}

/** Returns what it is given: the `freeze` of handles that do not freeze, the `decode` of states without serde. */
export const identity = <T>(v: T): T => v

/**
 * The live part of a stored value at `now`: the value itself if nothing in it expired, a new
 * list or map without the expired elements or entries, or undefined if all of it expired.
 */
export function liveOf(kind: StateDescriptor['kind'], stored: unknown, ttlMs: number, now: number): unknown {
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
export class Cleaner {
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
