/**
 * The wire form of one key group of the heap backend's keyed state, as a snapshot chunk holds it
 * (persistence/keyed-chunk.ts): per state a flat [key, value, key, value...] array. Encoding reads
 * a table through its copy-on-write overlay, so it sees the group as it was when the snapshot
 * started; decoding builds the group's Map on restore. Values of a state with TTL go through
 * actors/state/ttl-wire.ts.
 */
import type { Serde } from '../../persistence/serde.ts'
import { UnserializableStateError } from '../errors.ts'
import { unserializableIn } from './checks.ts'
import type { Key } from './key-groups.ts'
import { ABSENT, type Group, type StateTable } from './state-table.ts'
import { ttlFromWire, ttlToWire } from './ttl-wire.ts'
import type { StateDescriptor } from '../api/state.ts'

/**
 * The group's entries as the snapshot in progress saw them, in wire form (see `toWire`), read
 * through the overlay without building another Map; drops the overlay.
 */
export function snapshotWire(t: StateTable, i: number): unknown[] | undefined {
  const g = t.groups[i]
  const o = t.overlays[i]
  t.overlays[i] = undefined
  if ((g === undefined || g.size === 0) && (o === undefined || o.size === 0)) return undefined
  const serde = t.descriptor.serde
  const d = t.descriptor
  if (t.ttl !== undefined) return snapshotTtlWire(t, g, o)
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
  if (serde === undefined) checkWire(t, out, t.backend.snapshots === 1 ? n : 2)
  return out
}

/** `snapshotWire` of a state with TTL: values in `[value, time]` pairs, expired ones left out. */
function snapshotTtlWire(t: StateTable, g: Group | undefined, o: Map<Key, unknown> | undefined): unknown[] | undefined {
  const d = t.descriptor
  const ttlMs = t.ttl!.ttlMs
  const now = t.backend.snapshotTime
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
  if (d.serde === undefined) checkWire(t, out, t.backend.snapshots === 1 ? out.length : 2)
  return out
}

/**
 * Throws `UnserializableStateError` if one of the first `upTo / 2` values of a wire array is
 * something CBOR cannot round-trip. The first snapshot of an attempt checks every value (one
 * walk per attempt); later ones check the first value of each key group, so a state whose
 * values changed shape is still caught soon, at a cost per group, not per key.
 */
export function checkWire(t: StateTable, wire: readonly unknown[], upTo: number): void {
  for (let i = 0; i < upTo; i += 2) {
    const problem = unserializableIn(wire[i + 1])
    if (problem !== undefined) throw new UnserializableStateError(t.backend.operator, t.descriptor.name, wire[i], problem)
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

export function fromWire(d: StateDescriptor, entries: readonly unknown[]): Group {
  const g: Group = new Map()
  const serde = d.serde
  for (let i = 0; i < entries.length; i += 2) {
    g.set(entries[i] as Key, serde === undefined ? entries[i + 1] : decodeValue(d, serde, entries[i + 1]))
  }
  return g
}

/** `fromWire` when the state or the chunk has TTL (see `ttlFromWire`): expired values are dropped. */
export function ttlGroupFromWire(t: StateTable, chunkTtlMs: number | undefined, entries: readonly unknown[], now: number): Group {
  // A NaN time would be stored as the values' last access and never expire.
  if (!Number.isFinite(now)) throw new Error(`state "${t.descriptor.name}" has TTL and the clock returned ${String(now)}; a Clock's now() must return milliseconds as a finite number`)
  const g: Group = new Map()
  for (let i = 0; i < entries.length; i += 2) {
    const v = ttlFromWire(t.descriptor, t.ttl, chunkTtlMs, entries[i + 1], now)
    if (v !== undefined) g.set(entries[i] as Key, v)
  }
  return g
}
