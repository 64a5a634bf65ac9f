/**
 * The snapshot store contract (docs/architecture.md section 8). Two implementations pass one shared
 * conformance suite (`test/persistence/store-conformance.ts`): `PostgresStore` and
 * `EmbeddedStore`.
 *
 * A checkpoint goes `pending -> completed` or `pending -> aborted`. Chunks are written while it
 * is pending, in atomic batches (one batch per instance ack); `completeCheckpoint` is the last
 * write, so a reader never sees a half-written checkpoint as completed.
 */
import type { FencedError, LeaseHolderInfo } from './errors.ts'
import type { ChunkKind, SnapshotStatus } from './snapshot-kinds.ts'

/** Whether a snapshot was taken automatically (pruned by retention) or asked for (kept). */
export type SnapshotKind = 'checkpoint' | 'savepoint'

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

/** What {@link SnapshotStore.beginSnapshot} records about a new pending snapshot. */
export interface BeginSnapshot {
  job: string
  id: number
  kind: SnapshotKind
  attempt: number
  layout: SnapshotLayout
  triggeredAt: number
}

/** What {@link SnapshotStore.completeSnapshot} records when a snapshot completes. */
export interface CompleteSnapshot {
  completedAt: number
  durationMs: number
}

/** Which chunks {@link SnapshotStore.readChunks} returns; every field left out matches all. */
export interface ChunkFilter {
  operatorUid?: string
  kind?: ChunkKind
  /** Only these indexes (key groups or instance indexes). */
  indexes?: readonly number[]
}

/**
 * What a runner that wants a job's lease does about a holder that still has it, unexpired
 * (docs/architecture.md section 8):
 *
 * - `wait`: a holder known to be gone is taken over at once (on this host: its process is dead, a
 *   zombie, or its pid now belongs to another process); a holder whose heartbeat stopped is waited
 *   for until its lease expires, then fenced by the new epoch; only a holder still renewing its
 *   lease is refused with `JobAlreadyRunningError`.
 * - `refuse`: every unexpired holder whose pid still answers is refused at once, even one whose
 *   heartbeat stopped or whose process is a zombie (how leases behaved before `wait`).
 */
export type LeaseTakeover = 'wait' | 'refuse'

/** A wait for a silent holder, as {@link LeaseOptions.onWait} hears of it. */
export interface LeaseWait {
  job: string
  /** The holder whose lease is waited out. */
  holder: LeaseHolderInfo
  /** How long ago the holder last renewed its lease. */
  silentMs: number
  /** How long the wait lasts at most: until the holder's lease expires. */
  waitMs: number
}

/** Timing of a job lease, and what to do about another holder. */
export interface LeaseOptions {
  /**
   * How long a holder may go without a heartbeat before another runner may take the lease
   * over. A holder that is stopped (SIGSTOP, a long GC pause, a lost network) for longer than
   * this is fenced: its later writes fail with `FencedError`.
   * @default 10000
   */
  expiryMs?: number
  /**
   * Time between heartbeats, each of which also checks that the lease is still held.
   * @default a third of `expiryMs`
   */
  heartbeatMs?: number
  /**
   * What `acquireLease` does about an unexpired holder (see {@link LeaseTakeover}).
   * @default 'wait'
   */
  takeover?: LeaseTakeover
  /**
   * Called when `acquireLease` starts to wait for a holder whose heartbeat stopped, once per
   * holder, so that a runner can say in its log whom it waits for and how long.
   */
  onWait?: (wait: LeaseWait) => void
}

/**
 * The ownership of one job's snapshots by one store instance (docs/architecture.md section 8).
 * Taking a lease increments the job's fencing epoch; every mutation of the job's snapshots
 * through the store that holds it is conditional on that epoch still being the current one.
 */
export interface JobLease {
  readonly job: string
  /** The fencing epoch: greater than every epoch taken before for this job. */
  readonly epoch: number
  /** A random id of this holder. */
  readonly owner: string
  readonly host: string
  readonly pid: number
  /** When the lease was taken, epoch milliseconds. */
  readonly since: number
  /**
   * Settles with a `FencedError` once the lease is known to be lost (a heartbeat or a mutation
   * found a newer epoch); never settles while it is held. A runner races its work against it.
   */
  readonly lost: Promise<FencedError>
  /** Stops the heartbeat and lets the next runner take the lease at once. Idempotent. */
  release(): Promise<void>
}

export interface SnapshotStore {
  /** A short description for logs, e.g. `postgres(weir@127.0.0.1:5432/test)`. */
  readonly description: string
  /**
   * Connects and creates or migrates the schema. Idempotent. A read-only store creates nothing:
   * over missing storage it opens and lists no snapshots.
   */
  open(): Promise<void>
  close(): Promise<void>
  /**
   * Takes the job's lease (one owner per job, fenced by an epoch). Every mutation below
   * (`beginSnapshot`, `writeChunks`, `completeSnapshot`, `abortSnapshot`, `discardSnapshot`)
   * needs it and throws `FencedError` without it or once it is lost. Throws
   * `JobAlreadyRunningError` naming the holder if a live runner holds it; a holder whose
   * heartbeat is older than its expiry, or whose process is gone from this host, is taken over.
   */
  acquireLease(job: string, options?: LeaseOptions): Promise<JobLease>
  /**
   * Writes chunks of `job` under the lease another process holds at `epoch` (a cluster node for
   * its coordinator), fenced like the holder's own writes. Only stores several processes share
   * have it (Postgres); a cluster refuses a store without it.
   */
  followLease?(job: string, epoch: number, options?: LeaseOptions): Promise<void>
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
