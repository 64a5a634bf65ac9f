import { isKeyGroupKind, type ChunkKind, type SnapshotStatus } from './snapshot-kinds.ts'

/**
 * The base of every error Weir throws. Whether a restart can help is part of the class tree:
 * a {@link RetryableError} may go away on its own (a database restarting, user code meeting a
 * bad record it will skip after a fix), a {@link TerminalError} never does (a malformed job, a
 * corrupt snapshot). The supervisor reads {@link isRetryable}, never a field of a foreign error.
 */
export abstract class WeirError extends Error {
  /** True if running the same thing again may succeed. */
  abstract readonly retryable: boolean
}

/** A failure that a retry or a restart may get past. */
export abstract class RetryableError extends WeirError {
  readonly retryable = true
}

/** A failure that no retry can fix: something must change first (the job, an option, the data). */
export abstract class TerminalError extends WeirError {
  readonly retryable = false
}

/**
 * Whether a restart may get past `error`. Weir's own errors say so by their class; anything
 * else (a bug, an error thrown by a library) is given the benefit of a restart.
 */
export function isRetryable(error: unknown): boolean {
  return error instanceof WeirError ? error.retryable : true
}

/** The `code` of a Node system error or a Postgres error (SQLSTATE), if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** Turns anything thrown into an `Error`, keeping an `Error` as it is. */
export function ensureError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(describeThrown(thrown), { cause: thrown })
}

/** A thrown value in words, readable whatever it is (a string, an object, a symbol, null). */
export function describeThrown(thrown: unknown): string {
  if (thrown instanceof Error) return thrown.message
  if (typeof thrown === 'string') return thrown
  if (thrown === undefined || thrown === null || typeof thrown !== 'object') {
    try {
      return `a thrown ${thrown === null ? 'null' : typeof thrown} (${String(thrown)})`
    } catch {
      return `a thrown ${typeof thrown}`
    }
  }
  try {
    const json = JSON.stringify(thrown)
    if (json !== undefined) return `a thrown non-Error object ${json.length > 200 ? `${json.slice(0, 200)}...` : json}`
  } catch {
    // a cycle or a bigint: fall through to its constructor name
  }
  const name = (thrown as { constructor?: { name?: unknown } }).constructor?.name
  return `a thrown non-Error ${typeof name === 'string' && name !== '' ? name : 'object'}`
}

/**
 * An option has a wrong type or value. A user's mistake: fix the option, retrying cannot help.
 * Lives here, in the lowest layer, so that store options and the runtime's options fail alike.
 */
export class InvalidOptionError extends TerminalError {
  override readonly name = 'InvalidOptionError'
  constructor(
    /** Dotted path of the option, e.g. `checkpoints.intervalMs`. */
    readonly option: string,
    /** What was expected, e.g. `a positive integer`. */
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`option ${option}: expected ${expected}, got ${describeOptionValue(value)}`)
  }
}

/** An option name that does not exist (often a typo). */
export class UnknownOptionError extends TerminalError {
  override readonly name = 'UnknownOptionError'
  constructor(
    readonly option: string,
    readonly known: readonly string[],
  ) {
    super(`unknown option ${option}; known options: ${known.join(', ')}`)
  }
}

/** An option's value in words, short: strings quoted, objects by kind (not their contents, which may be secrets). */
function describeOptionValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  if (value === null) return 'null'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

/**
 * The snapshot store cannot be reached: the database is down or refuses us, or the directory
 * cannot be created or written. Retrying later can help, so a supervisor should back off and
 * retry rather than fail the job for good.
 */
export class StoreUnavailableError extends RetryableError {
  override readonly name = 'StoreUnavailableError'
  /** What we tried to reach, e.g. `127.0.0.1:5432/test` or a directory. Never holds a password. */
  readonly target: string

  constructor(target: string, problem: string, check: string, options?: { cause?: unknown }) {
    super(`snapshot store ${target} is unavailable: ${problem}; ${check}`, options)
    this.target = target
  }
}

/**
 * Stored snapshot data fails its checksum or cannot be decoded. Retrying reads the same bytes,
 * so it never helps: restore from an earlier snapshot instead.
 *
 * The address fields are `undefined` when the damage is not confined to one chunk (an
 * unreadable batch file or header); `file` then says where to look.
 */
export class CorruptChunkError extends TerminalError {
  override readonly name = 'CorruptChunkError'
  readonly job: string
  readonly snapshotId: number
  readonly operatorUid: string | undefined
  readonly kind: ChunkKind | undefined
  /** Key group (`keyed`) or instance index (`operator`). */
  readonly index: number | undefined
  /** The damaged file, for the embedded store. */
  readonly file: string | undefined

  constructor(
    fields: {
      job: string
      snapshotId: number
      operatorUid?: string | undefined
      kind?: ChunkKind | undefined
      index?: number | undefined
      file?: string | undefined
    },
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${describeDamage(fields)} is corrupt: ${problem}; restore from an earlier snapshot`, options)
    this.job = fields.job
    this.snapshotId = fields.snapshotId
    this.operatorUid = fields.operatorUid
    this.kind = fields.kind
    this.index = fields.index
    this.file = fields.file
  }
}

/** A chunk's index in words: a key group or an instance, by the chunk's kind. */
function where(kind: ChunkKind, index: number): string {
  return isKeyGroupKind(kind) ? `key group ${index}` : `instance ${index}`
}

function describeDamage(fields: {
  job: string
  snapshotId: number
  operatorUid?: string | undefined
  kind?: ChunkKind | undefined
  index?: number | undefined
  file?: string | undefined
}): string {
  const snapshot = `snapshot ${fields.snapshotId} of job '${fields.job}'`
  if (fields.operatorUid !== undefined && fields.kind !== undefined && fields.index !== undefined) {
    return `${fields.kind} chunk (${where(fields.kind, fields.index)}) of operator '${fields.operatorUid}' in ${snapshot}`
  }
  return fields.file === undefined ? snapshot : `file ${fields.file} of ${snapshot}`
}

/**
 * An operation does not fit the snapshot's state: writing to a snapshot that is not pending,
 * beginning an id that exists, completing or aborting one that is not pending, reading one that
 * is not completed. This is a protocol mistake of the caller; retrying the same call cannot help.
 */
export class SnapshotStateError extends TerminalError {
  override readonly name = 'SnapshotStateError'
  readonly job: string
  readonly snapshotId: number
  /** The snapshot's status when the operation was refused; `undefined` if it does not exist. */
  readonly status: SnapshotStatus | undefined

  constructor(job: string, snapshotId: number, status: SnapshotStatus | undefined, operation: string) {
    const state = status === undefined ? 'it does not exist' : `it is ${status}`
    super(`cannot ${operation} snapshot ${snapshotId} of job '${job}': ${state}`)
    this.job = job
    this.snapshotId = snapshotId
    this.status = status
  }
}

/**
 * The same chunk address was written twice to one snapshot. Two writers claim the same key group
 * or instance, or a write was repeated; either way the snapshot cannot be trusted, so it should
 * be aborted.
 */
export class DuplicateChunkError extends TerminalError {
  override readonly name = 'DuplicateChunkError'
  readonly job: string
  readonly snapshotId: number
  readonly operatorUid: string
  readonly kind: ChunkKind
  readonly index: number

  constructor(fields: { job: string; snapshotId: number; operatorUid: string; kind: ChunkKind; index: number }) {
    super(
      `${fields.kind} chunk (${where(fields.kind, fields.index)}) of operator '${fields.operatorUid}' was already written to ` +
        `snapshot ${fields.snapshotId} of job '${fields.job}'; abort this snapshot`,
    )
    this.job = fields.job
    this.snapshotId = fields.snapshotId
    this.operatorUid = fields.operatorUid
    this.kind = fields.kind
    this.index = fields.index
  }
}

/**
 * The stored schema or layout version is newer than this code knows: a newer Weir wrote it.
 * Retrying cannot help; upgrade Weir or point it at another database or directory.
 */
export class StoreSchemaError extends TerminalError {
  override readonly name = 'StoreSchemaError'
  readonly target: string
  /** The version found in the store. */
  readonly foundVersion: number
  /** The newest version this code knows. */
  readonly knownVersion: number

  constructor(target: string, foundVersion: number, knownVersion: number) {
    super(
      `snapshot store ${target} has schema version ${foundVersion}, but this version of Weir knows ` +
        `only up to ${knownVersion}; upgrade Weir or use another store`,
    )
    this.target = target
    this.foundVersion = foundVersion
    this.knownVersion = knownVersion
  }
}

/** Who holds a job's lease: enough for a person to find the process. */
export interface LeaseHolderInfo {
  /** A random id of the runner (one per lease taken). */
  owner: string
  host: string
  pid: number
  /** When the holder took the lease, epoch milliseconds. */
  since: number
}

/**
 * Another runner holds the job's lease and is alive (its heartbeat is fresh, or its process
 * runs on this host). Two runners of one job would overwrite each other's snapshots, so the
 * second one is refused before it touches anything. Stop the other runner, or wait for it.
 */
export class JobAlreadyRunningError extends TerminalError {
  override readonly name = 'JobAlreadyRunningError'
  readonly job: string
  readonly holder: LeaseHolderInfo

  constructor(job: string, holder: LeaseHolderInfo) {
    super(
      `job '${job}' is already running on host ${holder.host} as pid ${holder.pid} since ` +
        `${new Date(holder.since).toISOString()}; stop that runner first (or wait for it to finish)`,
    )
    this.job = job
    this.holder = { ...holder }
  }
}

/**
 * This store instance does not hold the current lease of the job: another runner took it over
 * (this process was stopped or cut off past the lease expiry), or no lease was taken at all. A
 * writer without the lease must not begin, write, complete, abort or discard anything, so the
 * mutation is refused; the runner that holds the lease now owns the job's snapshots.
 */
export class FencedError extends TerminalError {
  override readonly name = 'FencedError'
  readonly job: string
  /** The epoch this instance held, `undefined` if it held no lease. */
  readonly heldEpoch: number | undefined
  /** The job's current epoch, when known. */
  readonly currentEpoch: number | undefined

  constructor(job: string, heldEpoch: number | undefined, currentEpoch: number | undefined, operation: string) {
    super(
      heldEpoch === undefined
        ? `cannot ${operation} for job '${job}': this store holds no lease on the job; call acquireLease('${job}') first`
        : `cannot ${operation} for job '${job}': the lease of epoch ${heldEpoch} was lost` +
            (currentEpoch === undefined ? '' : ` (the job is at epoch ${currentEpoch})`) +
            '; another runner took the job over, so this one must stop',
    )
    this.job = job
    this.heldEpoch = heldEpoch
    this.currentEpoch = currentEpoch
  }
}

/**
 * A store opened with `readOnly: true` was asked to take a job's lease (and so to write). Make
 * another store without `readOnly` for running jobs; inspecting commands never need one.
 */
export class ReadOnlyStoreError extends TerminalError {
  override readonly name = 'ReadOnlyStoreError'
  readonly target: string

  constructor(target: string, operation: string) {
    super(`cannot ${operation}: snapshot store ${target} was opened read-only; use a store made without readOnly to run jobs`)
    this.target = target
  }
}

/**
 * A completed snapshot does not prove it is whole: its manifest is missing or fails its checksum,
 * a chunk the manifest lists is missing, moved or changed, a chunk is there that it does not list,
 * or a restored key lies outside the key group of its chunk. Restoring it would give partial or
 * misplaced state, so it is never restored; retrying reads the same data, so it never helps.
 * `restore: 'latest'` skips such a snapshot for the newest one that verifies.
 */
export class CorruptSnapshotError extends TerminalError {
  override readonly name = 'CorruptSnapshotError'
  readonly job: string
  readonly snapshotId: number
  /** Each thing found wrong, in words, e.g. `keyed chunk (key group 5) of operator 'count' is missing`. */
  readonly problems: readonly string[]

  constructor(job: string, snapshotId: number, problems: readonly string[], options?: { cause?: unknown }) {
    const shown = problems.slice(0, 8).join('; ')
    const more = problems.length > 8 ? `; and ${problems.length - 8} more` : ''
    super(
      `snapshot ${snapshotId} of job '${job}' is corrupt: ${shown}${more}; restore from another snapshot ` +
        `(restore: 'latest' takes the newest that verifies) or start fresh with restore: 'none'`,
      options,
    )
    this.job = job
    this.snapshotId = snapshotId
    this.problems = [...problems]
  }
}

/** A chunk's address in words, for error messages: `keyed chunk (key group 5) of operator 'count'`. */
export function describeChunk(address: { operatorUid: string; kind: ChunkKind; index: number }): string {
  return `${address.kind} chunk (${where(address.kind, address.index)}) of operator '${address.operatorUid}'`
}
