/**
 * The payload of a keyed-state chunk (one key group of one operator), format 1:
 * CBOR `[1, [[stateName, stateKind, [key, value, key, value, ...]], ...]]`.
 * The store wraps it with the chunk's address and a checksum.
 */
import { cborSerde } from './serde.ts'

/** The chunk format this code writes and the newest it reads. */
export const KEYED_CHUNK_FORMAT = 1

export interface KeyedChunkState {
  name: string
  kind: string
  entries: unknown[]
}

const cbor = cborSerde<unknown>()

export function encodeKeyedChunk(states: readonly KeyedChunkState[]): Uint8Array {
  return cbor.encode([KEYED_CHUNK_FORMAT, states.map((s) => [s.name, s.kind, s.entries])])
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
    return { name: s[0], kind: s[1], entries: s[2] }
  })
}
