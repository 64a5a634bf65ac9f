import { createHash } from 'node:crypto'

/** The SHA-256 of `bytes` as lowercase hex: what every stored chunk is verified against. */
export function checksum(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}
