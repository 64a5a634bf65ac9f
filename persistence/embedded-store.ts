/**
 * A `SnapshotStore` in a local directory, for local mode: the quickstart needs no server
 * (docs/architecture.md section 8). Every write is atomic on disk, so `kill -9` at any moment leaves either
 * the old or the new state, never a half-written snapshot that looks completed.
 *
 * Layout:
 *
 *     <dir>/store.json                      {"format": 2}: refuses directories a newer Weir wrote
 *     <dir>/<job>/job.json                  the highest snapshot id discarded (ids are never reused)
 *     <dir>/<job>/lease-<epoch>.json        the job's lock: its owner and epoch (embedded-lock.ts)
 *     <dir>/<job>/<id>/snapshot.json        the header; its status is the last thing written, with
 *                                           the manifest (persistence/manifest.ts) once completed
 *     <dir>/<job>/<id>/chunks-<uuid>.cbor   one batch file per `writeChunks` call
 *     <dir>/<job>/.discard-<id>-<uuid>/     a discarded snapshot being deleted
 *     .tmp-*                                a write in flight or cut short by a crash
 */
import { randomUUID } from 'node:crypto'
import { readdir, readFile, rename, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { addressKey, chunkMatcher, compareAddresses } from './chunk-address.ts'
import { checksum } from './checksum.ts'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { mkdirDurable, renameTempSync, syncDir, syncDirs, TEMP_PREFIX, writeFileAtomic, writeTempFileQuickly } from './durable-fs.ts'
import { decodeBatch, encodeBatch } from './embedded-batch.ts'
import { holdsJobLock, holdsJobLockSync, releaseJobLock, renewJobLock, takeJobLock } from './embedded-lock.ts'
import {
  CorruptChunkError,
  CorruptSnapshotError,
  DuplicateChunkError,
  FencedError,
  InvalidOptionError,
  JobAlreadyRunningError,
  ReadOnlyStoreError,
  SnapshotStateError,
  StoreSchemaError,
  StoreUnavailableError,
  errorCode,
} from './errors.ts'
import { HeldLease, resolveLeaseOptions, thisHolder, type ResolvedLeaseOptions } from './lease.ts'
import { takeWhenFree } from './lease-takeover.ts'
import { buildManifest, verifyManifest, type ManifestEntry, type StoredManifest } from './manifest.ts'
import { assertJobName } from './job-name.ts'
import { checkBoolean, checkObject, rejectUnknownKeys } from './option-checks.ts'
import {
  assertBegin,
  assertChunks,
  assertComplete,
  assertFilter,
  assertSnapshotRef,
  dataBytes,
} from './store-arguments.ts'
import type { BeginSnapshot, ChunkFilter, CompleteSnapshot, JobLease, LeaseOptions, SnapshotInfo, SnapshotStore, StateChunk } from './store.ts'

/**
 * The directory layout version this code writes and the newest it reads. 2: completed headers
 * carry a manifest and batch entries list their chunk checksum in it; a completed header of
 * format 1 has no manifest and is refused on restore (`CorruptSnapshotError`).
 */
const STORE_FORMAT = 2
const STORE_FILE = 'store.json'
const JOB_FILE = 'job.json'
const HEADER_FILE = 'snapshot.json'
const DISCARD_PREFIX = '.discard-'
const SNAPSHOT_DIR = /^(0|[1-9][0-9]{0,15})$/
const DISCARDED = /^\.discard-(0|[1-9][0-9]{0,15})-/
const BATCH_FILE = /^chunks-[0-9a-f-]{36}\.cbor$/

/** File system errors that mean the directory cannot be used right now, not a bug. */
const UNAVAILABLE_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EIO', 'ENOTDIR', 'EMFILE', 'ENFILE', 'EBUSY'])

/** Options of {@link EmbeddedStore}. */
export interface EmbeddedStoreOptions {
  /**
   * The directory that holds every job's snapshots; created on `open()` if missing. The runtime
   * passes `.weir/snapshots` relative to the working directory.
   */
  dir: string
  /**
   * Open for reading only (`weir snapshots`, `weir state`): never creates the directory or any
   * file, opens a missing directory as empty, and refuses `acquireLease` (so every mutation).
   * @default false
   */
  readOnly?: boolean
  /** The lease timing `acquireLease` uses when not given its own. */
  lease?: LeaseOptions
}

/** Every key of {@link EmbeddedStoreOptions}: a new option must be added here too. */
const EMBEDDED_OPTION_KEYS = ['dir', 'readOnly', 'lease']

interface HeaderFile {
  format: number
  info: SnapshotInfo
  /** Completed snapshots only: the batch files that make up the snapshot, nothing else counts. */
  batches?: string[]
  /** Completed snapshots only: every chunk of the snapshot, checksummed. */
  manifest?: StoredManifest
}

/**
 * What this store knows of a pending snapshot it may write: the batches written, to refuse
 * repeated addresses without touching the disk, and the writes in flight, which complete and
 * abort wait for. The lease makes this instance the only writer of the job, so it is the truth.
 */
interface PendingSnapshot {
  /** The pending header as written by beginSnapshot. */
  info: SnapshotInfo
  files: Set<string>
  addresses: Set<string>
  /** Every chunk written, as the manifest will list it. */
  entries: ManifestEntry[]
  bytes: number
  writes: Set<Promise<unknown>>
  /** Set once complete or abort started: later writes are refused. */
  closing: boolean
}

/**
 * A snapshot store in a local directory: same semantics as `PostgresStore`, no server.
 *
 * @example
 * const store = new EmbeddedStore({ dir: '.weir/snapshots' })
 * await store.open()
 * const id = await store.nextSnapshotId('payments')
 * await store.beginSnapshot({ job: 'payments', id, kind: 'checkpoint', attempt: 0, layout, triggeredAt: Date.now() })
 * await store.writeChunks('payments', id, chunks)
 * await store.completeSnapshot('payments', id, { completedAt: Date.now(), durationMs: 12 })
 */
export class EmbeddedStore implements SnapshotStore {
  readonly description: string
  readonly #dir: string
  readonly #readOnly: boolean
  readonly #leaseOptions: ResolvedLeaseOptions
  /** Pending snapshots by directory; a promise so concurrent first writes load it once. */
  readonly #pending = new Map<string, Promise<PendingSnapshot>>()
  readonly #leases = new Map<string, HeldLease>()
  /** Per job: begin, abort and discard take turns (they read and write the job's files). */
  readonly #jobTurns = new Map<string, Promise<void>>()
  #opened = false

  constructor(options: EmbeddedStoreOptions) {
    rejectUnknownKeys('embedded', checkObject('embedded', options), EMBEDDED_OPTION_KEYS)
    if (typeof options.dir !== 'string' || options.dir === '') {
      throw new InvalidOptionError('embedded.dir', 'a non-empty folder path, e.g. ".weir/snapshots"', options.dir)
    }
    this.#dir = resolve(options.dir)
    this.#readOnly = options.readOnly === undefined ? false : checkBoolean('embedded.readOnly', options.readOnly)
    this.#leaseOptions = resolveLeaseOptions(options.lease, 'embedded.lease')
    this.description = `embedded(${this.#dir})`
  }

  async open(): Promise<void> {
    if (this.#readOnly) {
      await this.#openReadOnly()
      this.#opened = true
      return
    }
    try {
      await mkdirDurable(this.#dir)
      let format: unknown
      try {
        format = (JSON.parse(await readFile(join(this.#dir, STORE_FILE), 'utf8')) as { format?: unknown }).format
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err
        await writeFileAtomic(this.#dir, STORE_FILE, JSON.stringify({ format: STORE_FORMAT }))
        format = STORE_FORMAT
      }
      if (typeof format !== 'number') {
        throw new StoreUnavailableError(this.#dir, `${STORE_FILE} has no format number`, 'check that this directory belongs to Weir')
      }
      if (format > STORE_FORMAT) throw new StoreSchemaError(this.#dir, format, STORE_FORMAT)
    } catch (err) {
      // EEXIST: the path is a file, not a directory.
      throw this.#translate(err, 'cannot create or read the directory', ['EEXIST'])
    }
    this.#opened = true
  }

  async #openReadOnly(): Promise<void> {
    let text: string
    try {
      text = await readFile(join(this.#dir, STORE_FILE), 'utf8')
    } catch (err) {
      // Nothing stored yet: there is nothing to list, and nothing is created.
      if (errorCode(err) === 'ENOENT') return
      throw this.#translate(err, 'cannot read the directory')
    }
    const format = (JSON.parse(text) as { format?: unknown }).format
    if (typeof format !== 'number') {
      throw new StoreUnavailableError(this.#dir, `${STORE_FILE} has no format number`, 'check that this directory belongs to Weir')
    }
    if (format > STORE_FORMAT) throw new StoreSchemaError(this.#dir, format, STORE_FORMAT)
  }

  async close(): Promise<void> {
    for (const lease of [...this.#leases.values()]) await lease.release().catch(() => undefined)
    this.#opened = false
    this.#pending.clear()
  }

  async acquireLease(job: string, options?: LeaseOptions): Promise<JobLease> {
    assertJobName(job)
    const timing = resolveLeaseOptions(options, 'lease', this.#leaseOptions)
    if (this.#readOnly) throw new ReadOnlyStoreError(this.description, `take the lease of job '${job}'`)
    return this.#run(async () => {
      const held = this.#leases.get(job)
      if (held?.usable === true) throw new JobAlreadyRunningError(job, held)
      const jobDir = this.#jobDir(job)
      const holder = thisHolder(timing)
      const epoch = await takeWhenFree(() => takeJobLock(jobDir, job, holder, timing.takeover), timing.onWait)
      // What this instance remembered of the job's pending snapshots may be stale: another
      // owner may have written or aborted them since.
      for (const dir of [...this.#pending.keys()]) if (dir.startsWith(jobDir + '/')) this.#pending.delete(dir)
      const lease: HeldLease = new HeldLease(
        job,
        epoch,
        holder,
        timing,
        () => renewJobLock(jobDir, epoch),
        async () => {
          if (this.#leases.get(job) === lease) this.#leases.delete(job)
          await releaseJobLock(jobDir, epoch)
        },
      )
      this.#leases.set(job, lease)
      void lease.lost.then(() => {
        if (this.#leases.get(job) === lease) this.#leases.delete(job)
      })
      return lease
    })
  }

  async nextSnapshotId(job: string): Promise<number> {
    assertJobName(job)
    return this.#run(async () => {
      // Synchronous, as the other steps on the checkpoint path (see durable-fs.ts).
      let highest = this.#readHighWaterSync(job)
      const names = listDirSync(this.#jobDir(job))
      for (const name of names) {
        // Folders without a header (a crash inside beginSnapshot) still count as begun, and so
        // do tombstones a crash inside discardSnapshot left.
        if (SNAPSHOT_DIR.test(name)) highest = Math.max(highest, Number(name))
        const discarded = DISCARDED.exec(name)
        if (discarded !== null) highest = Math.max(highest, Number(discarded[1]))
      }
      return highest + 1
    })
  }

  async beginSnapshot(begin: BeginSnapshot): Promise<void> {
    assertBegin(begin)
    const { job, id } = begin
    await this.#run(() =>
      this.#mutate(job, 'begin a snapshot', true, async (lease) => {
        const dir = this.#snapshotDir(job, id)
        // The folder marks the id as begun (nextSnapshotId counts folders; job.json is written
        // only when a folder goes, in discardSnapshot), so an existing folder is the only case
        // that needs a look at its header.
        this.#fenceSync(job, 'begin a snapshot', lease)
        const created = await this.#makeSnapshotDir(job, dir)
        if (!created) {
          const existing = await this.#readHeader(job, id)
          if (existing !== undefined) throw new SnapshotStateError(job, id, existing.info.status, 'begin')
        }
        const info: SnapshotInfo = {
          job,
          id,
          kind: begin.kind,
          status: 'pending',
          attempt: begin.attempt,
          layout: structuredClone(begin.layout),
          triggeredAt: begin.triggeredAt,
        }
        // Nothing is fsynced yet: a pending snapshot lost in a power cut is one that never began.
        // completeSnapshot makes the folder, its files and the header durable before it returns.
        renameTempSync(await writeTempFileQuickly(dir, HEADER_FILE, JSON.stringify({ format: STORE_FORMAT, info } satisfies HeaderFile), false), dir, HEADER_FILE)
        this.#pending.set(dir, Promise.resolve(emptyPending(info)))
      }),
    )
  }

  async writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number> {
    assertSnapshotRef(job, id)
    assertChunks(job, id, chunks)
    return this.#run(() =>
      this.#mutate(job, 'write chunks', false, async (lease) => {
        const pending = await this.#pendingSnapshot(job, id, 'write chunks to')
        if (chunks.length === 0) return 0
        const keys = chunks.map(addressKey)
        const repeated = chunks.find((_, i) => pending.addresses.has(keys[i]!))
        if (repeated !== undefined) {
          throw new DuplicateChunkError({ job, snapshotId: id, operatorUid: repeated.operatorUid, kind: repeated.kind, index: repeated.index })
        }
        // Claimed before the first await, so a concurrent write of the same address is refused.
        for (const key of keys) pending.addresses.add(key)
        const write = this.#writeBatch(job, id, chunks, lease, pending)
        pending.writes.add(write)
        try {
          return await write
        } catch (err) {
          for (const key of keys) pending.addresses.delete(key)
          throw err
        } finally {
          pending.writes.delete(write)
        }
      }),
    )
  }

  /**
   * Writes one batch file. Writers of one snapshot run side by side; the file gets its name only
   * if this instance still holds the job. The directory is fsynced once, by completeSnapshot,
   * before the header that names the files.
   */
  async #writeBatch(job: string, id: number, chunks: readonly StateChunk[], lease: HeldLease, pending: PendingSnapshot): Promise<number> {
    const dir = this.#snapshotDir(job, id)
    const file = `chunks-${randomUUID()}.cbor`
    this.#fenceSync(job, 'write chunks', lease)
    const listed: ManifestEntry[] = []
    const temp = await writeTempFileQuickly(dir, file, encodeBatch(chunks, listed))
    this.#fenceSync(job, 'write chunks', lease)
    renameTempSync(temp, dir, file)
    const bytes = dataBytes(chunks)
    pending.files.add(file)
    pending.entries.push(...listed)
    pending.bytes += bytes
    return bytes
  }

  async completeSnapshot(job: string, id: number, complete: CompleteSnapshot): Promise<SnapshotInfo> {
    assertSnapshotRef(job, id)
    assertComplete(complete)
    const operation = 'complete a snapshot'
    return this.#run(() =>
      this.#mutate(job, operation, false, async (lease) => {
        const pending = await this.#pendingSnapshot(job, id, 'complete')
        pending.closing = true
        try {
          await Promise.allSettled([...pending.writes])
          const dir = this.#snapshotDir(job, id)
          const info: SnapshotInfo = {
            ...pending.info,
            status: 'completed',
            completedAt: complete.completedAt,
            durationMs: complete.durationMs,
            sizeBytes: pending.bytes,
          }
          const manifest = buildManifest(job, id, pending.info.layout, pending.entries)
          const headerFile: HeaderFile = { format: STORE_FORMAT, info, batches: [...pending.files].sort(), manifest }
          // Everything the header names becomes durable first: the batch renames and the snapshot
          // folder itself (its entry in the job folder), in one wait. Temp files a crash left are
          // swept on the way.
          this.#fenceSync(job, operation, lease)
          const [temp] = await Promise.all([
            writeTempFileQuickly(dir, HEADER_FILE, JSON.stringify(headerFile)),
            syncDirs([dir, this.#jobDir(job)]),
            this.#removeEntries(dir, (name) => name.startsWith(TEMP_PREFIX) && !name.endsWith(`-${HEADER_FILE}`)),
          ])
          // The header is the last write: until this rename lands, the snapshot is pending.
          this.#fenceSync(job, operation, lease)
          renameTempSync(temp, dir, HEADER_FILE)
          await syncDirs([dir])
          this.#pending.delete(dir)
          return info
        } catch (err) {
          pending.closing = false
          throw err
        }
      }),
    )
  }

  async abortSnapshot(job: string, id: number, reason: string): Promise<void> {
    assertSnapshotRef(job, id)
    const operation = 'abort a snapshot'
    await this.#run(() =>
      this.#mutate(job, operation, true, async (lease) => {
        const dir = this.#snapshotDir(job, id)
        const pending = await this.#pending.get(dir)?.catch(() => undefined)
        if (pending !== undefined) {
          pending.closing = true
          await Promise.allSettled([...pending.writes])
        }
        await this.#fence(job, operation, lease)
        const header = await this.#readHeader(job, id)
        if (header?.info.status === 'aborted') return
        if (header?.info.status !== 'pending') {
          if (pending !== undefined) pending.closing = false
          throw new SnapshotStateError(job, id, header?.info.status, 'abort')
        }
        await this.#writeHeader(dir, { format: STORE_FORMAT, info: { ...header.info, status: 'aborted', reason: String(reason) } })
        this.#pending.delete(dir)
        // The header already says aborted, so a crash before this sweep only leaves ignored files.
        await this.#removeEntries(dir, (name) => name !== HEADER_FILE)
      }),
    )
  }

  async getSnapshot(job: string, id: number): Promise<SnapshotInfo | undefined> {
    assertSnapshotRef(job, id)
    return this.#run(async () => (await this.#readHeader(job, id))?.info)
  }

  async listSnapshots(job: string): Promise<SnapshotInfo[]> {
    assertJobName(job)
    return this.#run(async () => {
      const ids = (await this.#listDir(this.#jobDir(job)))
        .filter((name) => SNAPSHOT_DIR.test(name))
        .map(Number)
        .sort((a, b) => a - b)
      const infos: SnapshotInfo[] = []
      for (const id of ids) {
        let header: HeaderFile | undefined
        try {
          header = await this.#readHeader(job, id)
        } catch (err) {
          // An unreadable header must not hide the other snapshots: it is left out (getSnapshot
          // and verifySnapshot of its id name the problem) and never restored.
          if (err instanceof CorruptSnapshotError) continue
          throw err
        }
        if (header !== undefined) infos.push(header.info)
      }
      return infos
    })
  }

  async latestCompleted(job: string): Promise<SnapshotInfo | undefined> {
    const all = await this.listSnapshots(job)
    return all.filter((s) => s.status === 'completed').at(-1)
  }

  async verifySnapshot(job: string, id: number): Promise<SnapshotInfo> {
    assertSnapshotRef(job, id)
    return this.#run(async () => {
      const header = await this.#completedHeader(job, id, 'verify')
      const dir = this.#snapshotDir(job, id)
      const held: ManifestEntry[] = []
      const unreadable: string[] = []
      for (const file of header.batches ?? []) {
        let bytes: Buffer
        try {
          bytes = await readFile(join(dir, file))
        } catch (err) {
          if (errorCode(err) !== 'ENOENT') throw err
          continue // its chunks are reported missing below
        }
        try {
          for (const e of decodeBatch(bytes, { job, snapshotId: id, file: join(dir, file) })) {
            held.push({ operatorUid: e.operatorUid, kind: e.kind, index: e.index, format: e.format, size: e.data.byteLength, checksum: e.checksum })
          }
        } catch (err) {
          if (!(err instanceof CorruptChunkError)) throw err
          unreadable.push(err.message)
        }
      }
      try {
        verifyManifest(job, id, header.manifest, held)
      } catch (err) {
        if (err instanceof CorruptSnapshotError && unreadable.length > 0) {
          throw new CorruptSnapshotError(job, id, [...unreadable, ...err.problems])
        }
        throw err
      }
      if (unreadable.length > 0) throw new CorruptSnapshotError(job, id, unreadable)
      return header.info
    })
  }

  async readChunks(job: string, id: number, filter?: ChunkFilter): Promise<StateChunk[]> {
    assertSnapshotRef(job, id)
    assertFilter(filter)
    return this.#run(async () => {
      const header = await this.#completedHeader(job, id, 'read chunks of')
      const matches = chunkMatcher(filter)
      const dir = this.#snapshotDir(job, id)
      const chunks: StateChunk[] = []
      for (const file of header.batches ?? []) {
        let bytes: Buffer
        try {
          bytes = await readFile(join(dir, file))
        } catch (err) {
          if (errorCode(err) !== 'ENOENT') throw err
          // Discarded while we read is not corruption.
          if ((await this.#readHeader(job, id)) === undefined) throw new SnapshotStateError(job, id, undefined, 'read chunks of')
          throw new CorruptChunkError({ job, snapshotId: id, file: join(dir, file) }, 'the batch file is missing', { cause: err })
        }
        for (const entry of decodeBatch(bytes, { job, snapshotId: id, file: join(dir, file) })) {
          if (!matches(entry)) continue
          if (checksum(entry.data) !== entry.dataChecksum) {
            throw new CorruptChunkError(
              { job, snapshotId: id, operatorUid: entry.operatorUid, kind: entry.kind, index: entry.index, file: join(dir, file) },
              'the data does not match its checksum',
            )
          }
          chunks.push({ operatorUid: entry.operatorUid, kind: entry.kind, index: entry.index, format: entry.format, data: entry.data })
        }
      }
      return chunks.sort(compareAddresses)
    })
  }

  async discardSnapshot(job: string, id: number): Promise<void> {
    assertSnapshotRef(job, id)
    await this.#run(() =>
      this.#mutate(job, 'discard a snapshot', true, async (lease) => {
        await this.#fence(job, 'discard a snapshot', lease)
        const jobDir = this.#jobDir(job)
        const dir = this.#snapshotDir(job, id)
        this.#pending.delete(dir)
        // One rename takes the snapshot out of sight at once; deleting a tree is not atomic, and a
        // crash halfway must not leave a completed header with missing batch files.
        const tombstone = join(jobDir, `${DISCARD_PREFIX}${id}-${randomUUID()}`)
        try {
          await rename(dir, tombstone)
        } catch (err) {
          if (errorCode(err) === 'ENOENT') return
          throw err
        }
        // The folder marked the id as begun; now the high-water mark keeps it from being handed
        // out again (until it is written, the tombstone's name does). Its write syncs the rename.
        if (id > (await this.#readHighWater(job))) await writeFileAtomic(jobDir, JOB_FILE, JSON.stringify({ lastSnapshotId: id }))
        else await syncDir(jobDir)
        // Sweeps this tombstone and any a crash left behind.
        await this.#removeEntries(jobDir, (name) => name.startsWith(DISCARD_PREFIX) || name.startsWith(TEMP_PREFIX))
      }),
    )
  }

  #jobDir(job: string): string {
    return join(this.#dir, job)
  }

  #snapshotDir(job: string, id: number): string {
    return join(this.#dir, job, String(id))
  }

  /** Runs `fn` after the job's earlier begin, abort and discard calls of this instance. */
  async #jobTurn<T>(job: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#jobTurns.get(job) ?? Promise.resolve()
    let release!: () => void
    const mine = previous.then(() => new Promise<void>((done) => (release = done)))
    this.#jobTurns.set(job, mine)
    await previous
    try {
      return await fn()
    } finally {
      release()
      if (this.#jobTurns.get(job) === mine) this.#jobTurns.delete(job)
    }
  }

  /** Creates a snapshot's folder; false if it exists. The job folder exists once a lease was taken. */
  async #makeSnapshotDir(job: string, dir: string): Promise<boolean> {
    try {
      mkdirSync(dir)
      return true
    } catch (err) {
      if (errorCode(err) === 'EEXIST') return false
      if (errorCode(err) !== 'ENOENT') throw err
    }
    await mkdirDurable(this.#jobDir(job))
    return this.#makeSnapshotDir(job, dir)
  }

  /** The lease this instance holds on `job`, if it may still be used; throws `FencedError` if not. */
  #lease(job: string, operation: string): HeldLease {
    const lease = this.#leases.get(job)
    if (lease === undefined) throw new FencedError(job, undefined, undefined, operation)
    if (!lease.usable) throw lease.fenced(operation)
    return lease
  }

  /**
   * Runs a mutation of `job` under this instance's lease, after the job's earlier begin, abort
   * and discard calls if `inTurn`. A mutation that fails looks at the lock again: a runner
   * stopped (SIGSTOP) while another took the job over finds the files it was writing moved or
   * deleted by the new owner (ENOENT, a snapshot no longer pending), and what it must learn then
   * is that it was fenced (docs/architecture.md section 8), not the error of a vanished file.
   */
  async #mutate<T>(job: string, operation: string, inTurn: boolean, fn: (lease: HeldLease) => Promise<T>): Promise<T> {
    const run = async () => {
      const lease = this.#lease(job, operation)
      try {
        return await fn(lease)
      } catch (err) {
        if (err instanceof FencedError) throw err
        // A lock that cannot be read now says nothing either way: the mutation's own error stands.
        const held = await holdsJobLock(this.#jobDir(job), lease.epoch).catch(() => true)
        if (!held) throw lease.markLost(operation)
        throw err
      }
    }
    return inTurn ? this.#jobTurn(job, run) : run()
  }

  /** {@link #fence} without a wait on the event loop, for the checkpoint path. */
  #fenceSync(job: string, operation: string, lease = this.#lease(job, operation)): void {
    if (!holdsJobLockSync(this.#jobDir(job), lease.epoch)) throw lease.markLost(operation)
  }

  /** Checks on disk that this instance still holds the job's current epoch. */
  async #fence(job: string, operation: string, lease = this.#lease(job, operation)): Promise<void> {
    if (!(await holdsJobLock(this.#jobDir(job), lease.epoch))) throw lease.markLost(operation)
  }

  /** Runs an operation of an open store and turns file system outages into `StoreUnavailableError`. */
  async #run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.#opened) throw new Error(`${this.description} is not open: call open() first`)
    try {
      return await fn()
    } catch (err) {
      throw this.#translate(err, 'cannot read or write the directory')
    }
  }

  #translate(err: unknown, problem: string, alsoUnavailable: readonly string[] = []): unknown {
    const code = errorCode(err)
    if (code === undefined || !(UNAVAILABLE_CODES.has(code) || alsoUnavailable.includes(code))) return err
    return new StoreUnavailableError(
      this.#dir,
      `${problem} (${code})`,
      'check that the path is a directory this process may write and that the disk has space',
      { cause: err },
    )
  }

  async #readHeader(job: string, id: number): Promise<HeaderFile | undefined> {
    const file = join(this.#snapshotDir(job, id), HEADER_FILE)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined
      throw err
    }
    let header: HeaderFile
    try {
      header = JSON.parse(text) as HeaderFile
    } catch (err) {
      throw new CorruptSnapshotError(job, id, [`its header ${file} is not valid JSON`], { cause: err })
    }
    if (typeof header?.format !== 'number') {
      throw new CorruptSnapshotError(job, id, [`its header ${file} has no format number`])
    }
    if (header.format > STORE_FORMAT) throw new StoreSchemaError(file, header.format, STORE_FORMAT)
    const info = header.info as Partial<SnapshotInfo> | undefined
    if (
      info?.job !== job ||
      info.id !== id ||
      !(['pending', 'completed', 'aborted'] as unknown[]).includes(info.status) ||
      typeof info.layout?.maxParallelism !== 'number' ||
      !Array.isArray(info.layout.operators)
    ) {
      throw new CorruptSnapshotError(job, id, [`its header ${file} does not describe this snapshot`])
    }
    return header
  }

  /** The header of completed snapshot `id`; a `SnapshotStateError` naming `operation` otherwise. */
  async #completedHeader(job: string, id: number, operation: string): Promise<HeaderFile & { info: { status: 'completed' } }> {
    const header = await this.#readHeader(job, id)
    if (header?.info.status !== 'completed') throw new SnapshotStateError(job, id, header?.info.status, operation)
    return header as HeaderFile & { info: { status: 'completed' } }
  }

  async #writeHeader(dir: string, header: HeaderFile): Promise<void> {
    await writeFileAtomic(dir, HEADER_FILE, JSON.stringify(header))
  }

  #readHighWaterSync(job: string): number {
    try {
      const parsed = JSON.parse(readFileSync(join(this.#jobDir(job), JOB_FILE), 'utf8')) as { lastSnapshotId?: unknown }
      return typeof parsed.lastSnapshotId === 'number' ? parsed.lastSnapshotId : 0
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return 0
      throw err
    }
  }

  async #readHighWater(job: string): Promise<number> {
    try {
      const parsed = JSON.parse(await readFile(join(this.#jobDir(job), JOB_FILE), 'utf8')) as { lastSnapshotId?: unknown }
      return typeof parsed.lastSnapshotId === 'number' ? parsed.lastSnapshotId : 0
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return 0
      throw err
    }
  }

  /**
   * The pending snapshot `id`, from memory if this instance began it, else from its folder (this
   * process before a restart, or an owner before a takeover, wrote it). Throws
   * `SnapshotStateError` unless it is pending and open for writes.
   */
  async #pendingSnapshot(job: string, id: number, operation: string): Promise<PendingSnapshot> {
    const dir = this.#snapshotDir(job, id)
    let loading = this.#pending.get(dir)
    if (loading === undefined) {
      const load = this.#loadPending(job, id)
      loading = load
      this.#pending.set(dir, load)
      load.catch(() => {
        if (this.#pending.get(dir) === load) this.#pending.delete(dir)
      })
    }
    let pending: PendingSnapshot
    try {
      pending = await loading
    } catch (err) {
      if (err instanceof SnapshotStateError) throw new SnapshotStateError(job, id, err.status, operation)
      throw err
    }
    if (pending.closing) throw new SnapshotStateError(job, id, 'pending', `${operation} (being completed or aborted)`)
    return pending
  }

  async #loadPending(job: string, id: number): Promise<PendingSnapshot> {
    const header = await this.#readHeader(job, id)
    if (header?.info.status !== 'pending') throw new SnapshotStateError(job, id, header?.info.status, 'use')
    const dir = this.#snapshotDir(job, id)
    const pending = emptyPending(header.info)
    for (const file of (await this.#listDir(dir)).filter((name) => BATCH_FILE.test(name))) {
      const path = join(dir, file)
      for (const entry of decodeBatch(await readFile(path), { job, snapshotId: id, file: path })) {
        pending.addresses.add(addressKey(entry))
        const { operatorUid, kind, index: at, format } = entry
        pending.entries.push({ operatorUid, kind, index: at, format, size: entry.data.byteLength, checksum: entry.checksum })
        pending.bytes += entry.data.byteLength
      }
      pending.files.add(file)
    }
    return pending
  }

  async #listDir(dir: string): Promise<string[]> {
    try {
      return await readdir(dir)
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return []
      throw err
    }
  }

  async #removeEntries(dir: string, select: (name: string) => boolean): Promise<void> {
    const doomed = (await this.#listDir(dir)).filter(select)
    for (const name of doomed) await rm(join(dir, name), { recursive: true, force: true })
    if (doomed.length > 0) await syncDir(dir)
  }
}

function listDirSync(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return []
    throw err
  }
}

function emptyPending(info: SnapshotInfo): PendingSnapshot {
  return { info, files: new Set(), addresses: new Set(), entries: [], bytes: 0, writes: new Set(), closing: false }
}
