import { createHash } from 'node:crypto'
import type { ChunkAddress } from './store.ts'

/** The SHA-256 of `bytes` as lowercase hex: what every stored chunk is verified against. */
export function checksum(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * A chunk's checksum in both stores: it covers the address and the format as well as the data
 * (given by its checksum), so data moved to another key group, operator or format no longer
 * matches, although its bytes are intact.
 */
export function chunkChecksum(address: ChunkAddress, format: number, dataChecksum: string): string {
  const header = JSON.stringify([address.operatorUid, address.kind, address.index, format, dataChecksum])
  return checksum(Buffer.from(header, 'utf8'))
}
