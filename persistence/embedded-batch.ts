/**
 * The embedded store's batch file: every chunk of one `writeChunks` call, CBOR
 * `[BATCH_FORMAT, [[operatorUid, kind, index, format, dataChecksum, entryChecksum, data], ...]]`.
 *
 * `dataChecksum` covers the data alone. `entryChecksum` (`chunkChecksum`) covers the address and
 * format too: a damaged byte in a key group number would otherwise move valid data to the wrong
 * key group, which no data checksum notices. The snapshot's manifest lists the entry checksum.
 */
import { Encoder } from 'cbor-x'
import { checksum, chunkChecksum } from './checksum.ts'
import { CorruptChunkError } from './errors.ts'
import type { ManifestEntry } from './manifest.ts'
import type { ChunkKind } from './snapshot-kinds.ts'
import type { StateChunk } from './store.ts'

export const BATCH_FORMAT = 1

/** One chunk as it sits in a batch file, checksums not yet verified against the data. */
export interface BatchEntry extends StateChunk {
  dataChecksum: string
  /** The entry checksum (address, format and data checksum): what the snapshot's manifest lists. */
  checksum: string
}

// Byte strings stay plain CBOR byte strings (no typed-array tag) so any CBOR reader can open a
// batch; no shared record structures, so a file decodes on its own.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, structuredClone: false, tagUint8Array: false })

/** Encodes a batch; `listed`, if given, receives each chunk as a manifest lists it. */
export function encodeBatch(chunks: readonly StateChunk[], listed?: ManifestEntry[]): Uint8Array {
  const entries = chunks.map((c) => {
    const dataChecksum = checksum(c.data)
    const sum = chunkChecksum(c, c.format, dataChecksum)
    listed?.push({ operatorUid: c.operatorUid, kind: c.kind, index: c.index, format: c.format, size: c.data.byteLength, checksum: sum })
    return [c.operatorUid, c.kind, c.index, c.format, dataChecksum, sum, asBuffer(c.data)]
  })
  return encoder.encode([BATCH_FORMAT, entries])
}

/**
 * Decodes a batch file and checks every entry's address checksum; data checksums are left to the
 * reader, which verifies only the chunks it returns. Anything malformed is a `CorruptChunkError`,
 * never a raw decoder exception.
 */
export function decodeBatch(bytes: Uint8Array, where: { job: string; snapshotId: number; file: string }): BatchEntry[] {
  const corrupt = (problem: string, cause?: unknown): CorruptChunkError =>
    new CorruptChunkError(where, problem, cause === undefined ? undefined : { cause })
  let value: unknown
  try {
    value = encoder.decode(bytes)
  } catch (err) {
    throw corrupt('the batch file cannot be decoded (truncated or overwritten)', err)
  }
  if (!Array.isArray(value) || typeof value[0] !== 'number' || !Array.isArray(value[1])) {
    throw corrupt('the batch file does not have the batch layout')
  }
  if (value[0] !== BATCH_FORMAT) {
    throw corrupt(`unknown batch format ${value[0]} (this Weir reads format ${BATCH_FORMAT})`)
  }
  return (value[1] as unknown[]).map((raw) => {
    if (!Array.isArray(raw) || raw.length !== 7) throw corrupt('a batch entry is malformed')
    const [operatorUid, kind, index, format, dataChecksum, storedEntryChecksum, data] = raw as unknown[]
    if (
      typeof operatorUid !== 'string' ||
      !(['keyed', 'operator', 'timers', 'channel'] as unknown[]).includes(kind) ||
      typeof index !== 'number' ||
      typeof format !== 'number' ||
      typeof dataChecksum !== 'string' ||
      typeof storedEntryChecksum !== 'string' ||
      !(data instanceof Uint8Array)
    ) {
      throw corrupt('a batch entry is malformed')
    }
    const entry: BatchEntry = { operatorUid, kind: kind as ChunkKind, index, format, dataChecksum, checksum: storedEntryChecksum, data: plainBytes(data) }
    if (chunkChecksum(entry, format, dataChecksum) !== storedEntryChecksum) {
      throw corrupt('the address of a chunk fails its checksum')
    }
    return entry
  })
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

// Readers get plain `Uint8Array` views (no Buffer subclass), as from the Postgres store.
function plainBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
