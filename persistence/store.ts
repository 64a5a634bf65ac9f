/**
 * The snapshot store contract (docs/architecture.md section 8). Two implementations pass one shared
 * conformance suite (`test/persistence/store-conformance.ts`): `PostgresStore` and
 * `EmbeddedStore`.
 *
 * A checkpoint goes `pending -> completed` or `pending -> aborted`. Chunks are written while it
 * is pending, in atomic batches (one batch per instance ack); `completeCheckpoint` is the last
 * write, so a reader never sees a half-written checkpoint as completed.
 */

/** Whether a snapshot was taken automatically (pruned by retention) or asked for (kept). */
export type SnapshotKind = 'checkpoint' | 'savepoint'

/** Where a snapshot is in its life. */
export type SnapshotStatus = 'pending' | 'completed' | 'aborted'

/**
 * What a chunk holds. `keyed`: the keyed state of one key group (`index` = key group).
 * `operator`: the operator state of one instance (`index` = instance index), e.g. source offsets.
 * Reserved for the issues that add them: `timers`, the timers of one key group (`index` = key
 * group), and `channel`, the recorded in-flight messages of one instance (`index` = instance).
 */
export type ChunkKind = 'keyed' | 'operator' | 'timers' | 'channel'

/** True for the kinds addressed by key group (the others by instance index). */
export function isKeyGroupKind(kind: ChunkKind): boolean {
  return kind === 'keyed' || kind === 'timers'
}

/** Where a chunk lives inside a checkpoint. */
export interface ChunkAddress {
  operatorUid: string
  kind: ChunkKind
  index: number
}

/** One unit of snapshot data. The store computes the checksum on write and verifies it on read. */
export interface StateChunk extends ChunkAddress {
  /** Version of the chunk's payload layout, so readers can refuse what they do not know. */
  format: number
  data: Uint8Array
}

/** The shape of the job a snapshot was taken from; restore checks it. */
export interface SnapshotLayout {
  maxParallelism: number
  operators: SnapshotLayoutOperator[]
}

/** One operator of a {@link SnapshotLayout}. */
export interface SnapshotLayoutOperator {
  uid: string
  parallelism: number
  /**
   * The chunk kinds every snapshot must hold for this operator: a key-group kind for every key
   * group (`0..maxParallelism - 1`, empty ones included), the others for every instance. The store
   * refuses to complete a snapshot that lacks one. Absent: nothing is required.
   */
  chunks?: ChunkKind[]
}

/** A snapshot's header row. */
export interface SnapshotInfo {
  job: string
  id: number
  kind: SnapshotKind
  status: SnapshotStatus
  /** The job attempt (restart count) that took it. */
  attempt: number
  layout: SnapshotLayout
  /** Epoch milliseconds. */
  triggeredAt: number
  completedAt?: number
  /** Total bytes of chunk data. */
  sizeBytes?: number
  durationMs?: number
  /** Why it was aborted. */
  reason?: string
}

export interface BeginSnapshot {
  job: string
  id: number
  kind: SnapshotKind
  attempt: number
  layout: SnapshotLayout
  triggeredAt: number
}

export interface CompleteSnapshot {
  completedAt: number
  durationMs: number
}

export interface ChunkFilter {
  operatorUid?: string
  kind?: ChunkKind
  /** Only these indexes (key groups or instance indexes). */
  indexes?: readonly number[]
}

export interface SnapshotStore {
  /** A short description for logs, e.g. `postgres(weir@127.0.0.1:5432/test)`. */
  readonly description: string
  /** Connects and creates or migrates the schema. Idempotent. */
  open(): Promise<void>
  close(): Promise<void>
  /** The next unused snapshot id of a job (greater than every id ever begun). */
  nextSnapshotId(job: string): Promise<number>
  /** Records a pending snapshot. Fails if the id exists. */
  beginSnapshot(begin: BeginSnapshot): Promise<void>
  /** Writes chunks atomically (all or none); fails unless the snapshot is pending. Returns bytes written. */
  writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number>
  /**
   * Marks a pending snapshot completed; the last write of a snapshot. Stores with it a checksummed
   * manifest of every chunk written; refuses (`CorruptSnapshotError`) if a chunk the layout requires
   * was never written.
   */
  completeSnapshot(job: string, id: number, complete: CompleteSnapshot): Promise<SnapshotInfo>
  /** Marks a pending snapshot aborted and drops its chunks. A completed one is never touched. */
  abortSnapshot(job: string, id: number, reason: string): Promise<void>
  getSnapshot(job: string, id: number): Promise<SnapshotInfo | undefined>
  /** All snapshots of a job, by id ascending. */
  listSnapshots(job: string): Promise<SnapshotInfo[]>
  /** The completed snapshot with the highest id, of any kind. */
  latestCompleted(job: string): Promise<SnapshotInfo | undefined>
  /**
   * Checks a completed snapshot against its manifest (written by `completeSnapshot`) without
   * decoding any state: the manifest is intact, every chunk it lists is there with its size and
   * checksum, and no other chunk is. Throws `CorruptSnapshotError` naming each problem.
   */
  verifySnapshot(job: string, id: number): Promise<SnapshotInfo>
  /** Reads and verifies chunks of a completed snapshot; a bad checksum throws `CorruptChunkError`. */
  readChunks(job: string, id: number, filter?: ChunkFilter): Promise<StateChunk[]>
  /** Deletes a snapshot and its chunks (retention). */
  discardSnapshot(job: string, id: number): Promise<void>
}
