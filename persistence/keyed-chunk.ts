/**
 * The payload of a keyed-state chunk (one key group of one operator), format 2:
 * CBOR `[2, [[stateName, stateKind, [key, value, key, value, ...], options?], ...]]`.
 * `options`, present only for a state with TTL, is `{ ttlMs }`; such a state's values are
 * `[value, lastAccessTime]` pairs (list: each element, map: each entry's value). Format 1 is
 * format 2 without options, and is still read. The store wraps it with the chunk's address and
 * a checksum.
 */
import { cborSerde } from './serde.ts'

/** The keys Weir can partition by. Build a string for a composite key. */
export type Key = string | number | bigint

/** The chunk format this code writes and the newest it reads. */
export const KEYED_CHUNK_FORMAT = 2

export interface KeyedChunkState {
  name: string
  kind: string
  entries: unknown[]
  /** The state's TTL when the chunk was written; absent: the state had none. */
  ttlMs?: number
}

const cbor = cborSerde<unknown>()

export function encodeKeyedChunk(states: readonly KeyedChunkState[]): Uint8Array {
  return cbor.encode([KEYED_CHUNK_FORMAT, states.map((s) => (s.ttlMs === undefined ? [s.name, s.kind, s.entries] : [s.name, s.kind, s.entries, { ttlMs: s.ttlMs }]))])
}

/** Decodes a keyed chunk; throws a plain Error naming what is wrong with its shape. */
export function decodeKeyedChunk(bytes: Uint8Array): KeyedChunkState[] {
  const value = cbor.decode(bytes)
  if (!Array.isArray(value) || typeof value[0] !== 'number' || !Array.isArray(value[1])) {
    throw new Error('not a keyed state chunk')
  }
  if (value[0] > KEYED_CHUNK_FORMAT) throw new Error(`keyed chunk format ${value[0]} is newer than this Weir reads (${KEYED_CHUNK_FORMAT})`)
  return (value[1] as unknown[]).map((s) => {
    if (!Array.isArray(s) || typeof s[0] !== 'string' || typeof s[1] !== 'string' || !Array.isArray(s[2])) {
      throw new Error('malformed state entry in keyed chunk')
    }
    if (s.length < 4 || s[3] === undefined) return { name: s[0], kind: s[1], entries: s[2] }
    const ttlMs = (s[3] as { ttlMs?: unknown } | null)?.ttlMs
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new Error(`malformed options of state ${s[0]} in keyed chunk`)
    return { name: s[0], kind: s[1], entries: s[2], ttlMs }
  })
}
