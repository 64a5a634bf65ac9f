/**
 * A `SnapshotStore` in a local directory, for local mode: the quickstart needs no server
 * (docs/architecture.md section 8). Every write is atomic on disk, so `kill -9` at any moment leaves either
 * the old or the new state, never a half-written snapshot that looks completed.
 *
 * Layout:
 *
 *     <dir>/store.json                      {"format": 2}: refuses directories a newer Weir wrote
 *     <dir>/<job>/job.json                  the highest snapshot id ever begun
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
import { mkdirDurable, syncDir, TEMP_PREFIX, writeFileAtomic } from './durable-fs.ts'
import { decodeBatch, encodeBatch } from './embedded-batch.ts'
import {
  CorruptChunkError,
  CorruptSnapshotError,
  DuplicateChunkError,
  SnapshotStateError,
  StoreSchemaError,
  StoreUnavailableError,
} from './errors.ts'
import { buildManifest, verifyManifest, type ManifestEntry, type StoredManifest } from './manifest.ts'
import { assertJobName } from './job-name.ts'
import {
  assertBegin,
  assertChunks,
  assertComplete,
  assertFilter,
  assertSnapshotRef,
  dataBytes,
} from './store-arguments.ts'
import type {
  BeginSnapshot,
  ChunkFilter,
  CompleteSnapshot,
  SnapshotInfo,
  SnapshotStore,
  StateChunk,
} from './store.ts'

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
}

interface HeaderFile {
  format: number
  info: SnapshotInfo
  /** Completed snapshots only: the batch files that make up the snapshot, nothing else counts. */
  batches?: string[]
  /** Completed snapshots only: every chunk of the snapshot, checksummed. */
  manifest?: StoredManifest
}

/** What this process knows of a pending snapshot's batches, to refuse repeated addresses cheaply. */
interface PendingIndex {
  files: Set<string>
  addresses: Set<string>
  /** Every chunk written, as the manifest will list it. */
  entries: ManifestEntry[]
  bytes: number
}

// Mutations of one job are serialized across every instance in this process, so a status check
// and the write it guards cannot interleave with another call. One process owns a directory;
// the runtime runs one job per process.
const jobLocks = new Map<string, Promise<void>>()

async function exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = jobLocks.get(key) ?? Promise.resolve()
  let release!: () => void
  const tail = previous.then(() => new Promise<void>((done) => (release = done)))
  jobLocks.set(key, tail)
  await previous
  try {
    return await fn()
  } finally {
    release()
    if (jobLocks.get(key) === tail) jobLocks.delete(key)
  }
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
  readonly #pending = new Map<string, PendingIndex>()
  #opened = false

  constructor(options: EmbeddedStoreOptions) {
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new TypeError('EmbeddedStore needs a non-empty `dir`, e.g. { dir: ".weir/snapshots" }')
    }
    this.#dir = resolve(options.dir)
    this.description = `embedded(${this.#dir})`
  }

  async open(): Promise<void> {
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

  async close(): Promise<void> {
    this.#opened = false
    this.#pending.clear()
  }

  async nextSnapshotId(job: string): Promise<number> {
    assertJobName(job)
    return this.#run(async () => {
      let highest = await this.#readHighWater(job)
      for (const name of await this.#listDir(this.#jobDir(job))) {
        // Folders without a header (a crash inside beginSnapshot) still count as begun.
        if (SNAPSHOT_DIR.test(name)) highest = Math.max(highest, Number(name))
      }
      return highest + 1
    })
  }

  async beginSnapshot(begin: BeginSnapshot): Promise<void> {
    assertBegin(begin)
    const { job, id } = begin
    await this.#run(() =>
      this.#exclusive(job, async () => {
        const existing = await this.#readHeader(job, id)
        if (existing !== undefined) throw new SnapshotStateError(job, id, existing.info.status, 'begin')
        const jobDir = this.#jobDir(job)
        await mkdirDurable(jobDir)
        // The high-water mark goes first so an id is never handed out twice, even after a discard.
        if (id > (await this.#readHighWater(job))) {
          await writeFileAtomic(jobDir, JOB_FILE, JSON.stringify({ lastSnapshotId: id }))
        }
        const dir = this.#snapshotDir(job, id)
        await mkdirDurable(dir)
        const info: SnapshotInfo = {
          job,
          id,
          kind: begin.kind,
          status: 'pending',
          attempt: begin.attempt,
          layout: structuredClone(begin.layout),
          triggeredAt: begin.triggeredAt,
        }
        await this.#writeHeader(dir, { format: STORE_FORMAT, info })
      }),
    )
  }

  async writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number> {
    assertSnapshotRef(job, id)
    assertChunks(job, id, chunks)
    return this.#run(() =>
      this.#exclusive(job, async () => {
        const header = await this.#readHeader(job, id)
        if (header?.info.status !== 'pending') {
          throw new SnapshotStateError(job, id, header?.info.status, 'write chunks to')
        }
        if (chunks.length === 0) return 0
        const index = await this.#pendingIndex(job, id)
        for (const chunk of chunks) {
          if (index.addresses.has(addressKey(chunk))) {
            throw new DuplicateChunkError({ job, snapshotId: id, operatorUid: chunk.operatorUid, kind: chunk.kind, index: chunk.index })
          }
        }
        const file = `chunks-${randomUUID()}.cbor`
        const listed: ManifestEntry[] = []
        await writeFileAtomic(this.#snapshotDir(job, id), file, encodeBatch(chunks, listed))
        const bytes = dataBytes(chunks)
        index.files.add(file)
        for (const chunk of chunks) index.addresses.add(addressKey(chunk))
        index.entries.push(...listed)
        index.bytes += bytes
        return bytes
      }),
    )
  }

  async completeSnapshot(job: string, id: number, complete: CompleteSnapshot): Promise<SnapshotInfo> {
    assertSnapshotRef(job, id)
    assertComplete(complete)
    return this.#run(() =>
      this.#exclusive(job, async () => {
        const header = await this.#readHeader(job, id)
        if (header?.info.status !== 'pending') {
          throw new SnapshotStateError(job, id, header?.info.status, 'complete')
        }
        const index = await this.#pendingIndex(job, id)
        const manifest = buildManifest(job, id, header.info.layout, index.entries)
        const dir = this.#snapshotDir(job, id)
        await this.#removeEntries(dir, (name) => name.startsWith(TEMP_PREFIX))
        const info: SnapshotInfo = {
          ...header.info,
          status: 'completed',
          completedAt: complete.completedAt,
          durationMs: complete.durationMs,
          sizeBytes: index.bytes,
        }
        // The header is the last write: until this rename lands, the snapshot is pending.
        await this.#writeHeader(dir, { format: STORE_FORMAT, info, batches: [...index.files].sort(), manifest })
        this.#pending.delete(dir)
        return info
      }),
    )
  }

  async abortSnapshot(job: string, id: number, reason: string): Promise<void> {
    assertSnapshotRef(job, id)
    await this.#run(() =>
      this.#exclusive(job, async () => {
        const header = await this.#readHeader(job, id)
        if (header?.info.status === 'aborted') return
        if (header?.info.status !== 'pending') throw new SnapshotStateError(job, id, header?.info.status, 'abort')
        const dir = this.#snapshotDir(job, id)
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
      const header = await this.#readHeader(job, id)
      if (header?.info.status !== 'completed') {
        throw new SnapshotStateError(job, id, header?.info.status, 'verify')
      }
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
      const header = await this.#readHeader(job, id)
      if (header?.info.status !== 'completed') {
        throw new SnapshotStateError(job, id, header?.info.status, 'read chunks of')
      }
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
      this.#exclusive(job, async () => {
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
        await syncDir(jobDir)
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

  #exclusive<T>(job: string, fn: () => Promise<T>): Promise<T> {
    return exclusive(this.#jobDir(job), fn)
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

  async #writeHeader(dir: string, header: HeaderFile): Promise<void> {
    await writeFileAtomic(dir, HEADER_FILE, JSON.stringify(header))
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
   * The batches of a pending snapshot, brought up to date with the directory: another instance,
   * or this process before a restart, may have written some.
   */
  async #pendingIndex(job: string, id: number): Promise<PendingIndex> {
    const dir = this.#snapshotDir(job, id)
    const onDisk = (await this.#listDir(dir)).filter((name) => BATCH_FILE.test(name))
    let index = this.#pending.get(dir)
    if (index === undefined || [...index.files].some((file) => !onDisk.includes(file))) {
      index = { files: new Set(), addresses: new Set(), entries: [], bytes: 0 }
      this.#pending.set(dir, index)
    }
    for (const file of onDisk) {
      if (index.files.has(file)) continue
      const path = join(dir, file)
      for (const entry of decodeBatch(await readFile(path), { job, snapshotId: id, file: path })) {
        index.addresses.add(addressKey(entry))
        const { operatorUid, kind, index: at, format } = entry
        index.entries.push({ operatorUid, kind, index: at, format, size: entry.data.byteLength, checksum: entry.checksum })
        index.bytes += entry.data.byteLength
      }
      index.files.add(file)
    }
    return index
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

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}
