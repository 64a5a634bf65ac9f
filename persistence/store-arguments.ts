/**
 * Argument checks shared by every `SnapshotStore`, so a caller's mistake fails the same way, at
 * once and before any I/O, whichever store is configured.
 */
import { addressKey } from './chunk-address.ts'
import { DuplicateChunkError } from './errors.ts'
import { assertJobName } from './job-name.ts'
import type { BeginSnapshot, ChunkFilter, CompleteSnapshot, SnapshotKind, StateChunk } from './store.ts'
import type { ChunkKind } from './snapshot-kinds.ts'

/** Indexes and formats are stored as 32-bit integers. */
const MAX_INT32 = 2 ** 31 - 1
const SNAPSHOT_KINDS: readonly SnapshotKind[] = ['checkpoint', 'savepoint']
const CHUNK_KINDS: readonly ChunkKind[] = ['keyed', 'operator', 'timers', 'channel']

export function assertSnapshotId(id: unknown): asserts id is number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new TypeError(`snapshot id must be a non-negative safe integer, got ${String(id)}`)
  }
}

export function assertSnapshotRef(job: unknown, id: unknown): asserts job is string {
  assertJobName(job)
  assertSnapshotId(id)
}

export function assertBegin(begin: BeginSnapshot): void {
  assertSnapshotRef(begin.job, begin.id)
  if (!SNAPSHOT_KINDS.includes(begin.kind)) {
    throw new TypeError(`snapshot kind must be 'checkpoint' or 'savepoint', got ${JSON.stringify(begin.kind)}`)
  }
  if (!isIntIn(begin.attempt, 0, MAX_INT32)) {
    throw new TypeError(`attempt must be a non-negative integer, got ${String(begin.attempt)}`)
  }
  if (!Number.isSafeInteger(begin.triggeredAt)) {
    throw new TypeError(`triggeredAt must be integer epoch milliseconds, got ${String(begin.triggeredAt)}`)
  }
  const layout = begin.layout as unknown
  if (typeof layout !== 'object' || layout === null) throw new TypeError('layout must be an object')
  if (!isIntIn(begin.layout.maxParallelism, 1, MAX_INT32)) {
    throw new TypeError(`layout.maxParallelism must be a positive integer, got ${String(begin.layout.maxParallelism)}`)
  }
  if (!Array.isArray(begin.layout.operators)) throw new TypeError('layout.operators must be an array')
  for (const op of begin.layout.operators) {
    if (typeof op?.uid !== 'string' || op.uid === '' || !isIntIn(op.parallelism, 1, MAX_INT32)) {
      throw new TypeError(
        `each layout operator needs a non-empty uid and a positive integer parallelism, got ${JSON.stringify(op)}`,
      )
    }
    if (op.chunks !== undefined && !(Array.isArray(op.chunks) && op.chunks.every((k) => CHUNK_KINDS.includes(k)))) {
      throw new TypeError(`layout operator '${op.uid}' has chunks ${JSON.stringify(op.chunks)}; expected an array of chunk kinds`)
    }
  }
}

export function assertComplete(complete: CompleteSnapshot): void {
  if (!Number.isSafeInteger(complete.completedAt)) {
    throw new TypeError(`completedAt must be integer epoch milliseconds, got ${String(complete.completedAt)}`)
  }
  if (!Number.isFinite(complete.durationMs) || complete.durationMs < 0) {
    throw new TypeError(`durationMs must be a non-negative number, got ${String(complete.durationMs)}`)
  }
}

/**
 * Checks every chunk of one write, including that no address repeats: a repeated address would
 * make the restored state depend on which copy a store happens to read.
 */
export function assertChunks(job: string, id: number, chunks: readonly StateChunk[]): void {
  if (!Array.isArray(chunks)) throw new TypeError('chunks must be an array')
  const seen = new Set<string>()
  for (const chunk of chunks) {
    if (typeof chunk?.operatorUid !== 'string' || chunk.operatorUid === '') {
      throw new TypeError(`chunk operatorUid must be a non-empty string, got ${String(chunk?.operatorUid)}`)
    }
    if (!CHUNK_KINDS.includes(chunk.kind)) {
      throw new TypeError(`chunk kind must be one of ${CHUNK_KINDS.join(', ')}, got ${JSON.stringify(chunk.kind)}`)
    }
    if (!isIntIn(chunk.index, 0, MAX_INT32)) {
      throw new TypeError(`chunk index must be a non-negative 32-bit integer, got ${String(chunk.index)}`)
    }
    if (!isIntIn(chunk.format, 0, MAX_INT32)) {
      throw new TypeError(`chunk format must be a non-negative 32-bit integer, got ${String(chunk.format)}`)
    }
    if (!(chunk.data instanceof Uint8Array)) {
      throw new TypeError(`chunk data must be a Uint8Array (operator '${chunk.operatorUid}', index ${chunk.index})`)
    }
    const key = addressKey(chunk)
    if (seen.has(key)) {
      throw new DuplicateChunkError({ job, snapshotId: id, operatorUid: chunk.operatorUid, kind: chunk.kind, index: chunk.index })
    }
    seen.add(key)
  }
}

export function assertFilter(filter: ChunkFilter | undefined): void {
  if (filter === undefined) return
  if (filter.kind !== undefined && !CHUNK_KINDS.includes(filter.kind)) {
    throw new TypeError(`filter kind must be one of ${CHUNK_KINDS.join(', ')}, got ${JSON.stringify(filter.kind)}`)
  }
  if (filter.indexes !== undefined && !filter.indexes.every((i) => isIntIn(i, 0, MAX_INT32))) {
    throw new TypeError('filter indexes must be non-negative 32-bit integers')
  }
}

/** The sum of chunk data bytes: what `writeChunks` returns and `sizeBytes` adds up. */
export function dataBytes(chunks: readonly StateChunk[]): number {
  let total = 0
  for (const chunk of chunks) total += chunk.data.byteLength
  return total
}

function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}
