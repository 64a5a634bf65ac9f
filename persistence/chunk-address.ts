import type { ChunkAddress, ChunkFilter } from './store.ts'

/** A string that identifies a chunk inside one snapshot, for sets and maps. */
export function addressKey(address: ChunkAddress): string {
  return `${address.kind}\u0000${address.index}\u0000${address.operatorUid}`
}

/**
 * The order `readChunks` returns chunks in, the same for every store: by operator uid (code unit
 * order, not a database collation), then kind, then index.
 */
export function compareAddresses(a: ChunkAddress, b: ChunkAddress): number {
  if (a.operatorUid !== b.operatorUid) return a.operatorUid < b.operatorUid ? -1 : 1
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1
  return a.index - b.index
}

/** A filter compiled once so matching a chunk costs a set lookup. */
export function chunkMatcher(filter: ChunkFilter | undefined): (address: ChunkAddress) => boolean {
  const indexes = filter?.indexes === undefined ? undefined : new Set(filter.indexes)
  return (address) =>
    (filter?.operatorUid === undefined || address.operatorUid === filter.operatorUid) &&
    (filter?.kind === undefined || address.kind === filter.kind) &&
    (indexes === undefined || indexes.has(address.index))
}
