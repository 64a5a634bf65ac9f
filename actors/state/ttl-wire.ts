/**
 * State with TTL in snapshots (docs/architecture.md section 14). In a chunk, a state with TTL is
 * marked with its `ttlMs`, and each value (list: each element; map: each entry's value) is written
 * as the pair `[value, ts]`, the value encoded by the state's serde if it has one. A restore
 * handles a chunk and a state that disagree on TTL (see `ttlFromWire`).
 */
import type { Serde } from '../../persistence/serde.ts'
import { expired, identity, liveOf, stamp, type Stamped } from './ttl.ts'
import type { StateDescriptor, StateTtl } from '../api/state.ts'

/** An element left out on restore. */
const DROP = Symbol('drop')

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
