/**
 * The offset of an NDJSON reader and the check that a restore resumes on the file the offset was
 * taken on: the offset's formats (three versions), the file's identity (a SHA-256 of every byte
 * before the offset) and the refusals that say what changed. The reader is
 * actors/connectors/ndjson-source.ts.
 */
import { createHash } from 'node:crypto'
import { fstatSync, read, readSync } from 'node:fs'
import { promisify } from 'node:util'
import { ConnectorError, SourceChangedError, type SourceChangeReason, type SourceFileIdentity } from '../errors.ts'

const readAt = promisify(read)

/** Bytes at each end of the read part of the file that the fingerprint of a version 2 offset covers. */
const FINGERPRINT_EDGE = 4096
/** Size of one read when a restore checks the bytes before the offset. */
const VERIFY_READ_BYTES = 1024 * 1024
export const OFFSET_VERSION = 3

/**
 * Offset of an NDJSON reader. `pos` and `line` are where the next line starts; `file` says
 * which file they belong to. Older versions: without `v`, `{ pos, line }`; version 2 has
 * `file.fingerprint` (of the first and last 4 KiB before `pos`) instead of `file.sha256`.
 */
export interface NdjsonOffset {
  v: typeof OFFSET_VERSION
  pos: number
  line: number
  parallelism: number
  badLines: number
  file: FileIdentity
}

/**
 * What identifies the file an offset was taken on. `sha256` is the authority: the same bytes
 * before `pos` are the same file, whatever its inode or modification time (a copy to another
 * machine restores); `id`, `size` and `mtimeMs` only say in a refusal what else changed.
 */
export interface FileIdentity extends SourceFileIdentity {
  /** SHA-256 (hex) of the bytes `[0, pos)`. */
  sha256: string
}

/** The file part of a version 2 offset. */
interface FileIdentityV2 {
  id: string
  size: number
  /** SHA-256 (hex, 32 digits) of the first and last {@link FINGERPRINT_EDGE} bytes before `pos`. */
  fingerprint: string
}

/** The file a reader has open, as the checks name it. */
export interface OpenFile {
  readonly fd: number
  readonly path: string
  /** The source operator's name, for errors. */
  readonly operator: string
}

/**
 * The running SHA-256 of a file's consumed prefix, as the reader uses it (node:crypto's `Hash`,
 * named here so that the published declarations do not need Node's types).
 */
export interface PrefixHash {
  update(data: Uint8Array): unknown
  copy(): PrefixHash
  digest(encoding: 'hex'): string
}

/** Where a checked offset resumes, with the hash of the bytes before it to go on from. */
export interface ResumePoint {
  pos: number
  line: number
  /** The bad lines counted before the offset; undefined for an offset older than the count. */
  badLines: number | undefined
  hash: PrefixHash
}

/** The file's identity now (without its hash). */
export function fileStat(fd: number): SourceFileIdentity {
  const stat = fstatSync(fd, { bigint: true })
  return { id: `${stat.dev}:${stat.ino}`, size: Number(stat.size), mtimeMs: Number(stat.mtimeMs) }
}

/**
 * Checks that the file is the one the offset was taken on and returns where to resume. It reads
 * the bytes before the offset once, to check their SHA-256 and to go on hashing from there; the
 * reads are asynchronous so a large file does not hold the event loop (heartbeats, timers).
 */
export async function checkOffset(file: OpenFile, offset: unknown, parallelism: number): Promise<ResumePoint> {
  const o = offset as (Partial<Omit<NdjsonOffset, 'v' | 'file'>> & { v?: unknown; file?: Partial<FileIdentity & FileIdentityV2> }) | null
  if (typeof o?.pos !== 'number' || typeof o.line !== 'number' || !Number.isSafeInteger(o.pos) || o.pos < 0) {
    throw refuse(file, `not an ndjson offset: ${JSON.stringify(offset)}`)
  }
  const pos = o.pos
  if (o.v !== undefined && o.v !== 2 && o.v !== OFFSET_VERSION) throw refuse(file, `offset format ${String(o.v)} is newer than this version of Weir reads`)
  if (o.v !== undefined && (typeof o.file !== 'object' || o.file === null)) throw refuse(file, `not an ndjson offset: ${JSON.stringify(offset)}`)
  if (o.v !== undefined && o.parallelism !== parallelism) {
    throw refuse(
      file,
      `the snapshot's offsets were taken with parallelism ${String(o.parallelism)}, this run has ${parallelism}; ` +
        `an ndjson source cannot be rescaled: run it with parallelism ${String(o.parallelism)}, or start without restoring`,
    )
  }
  const was = o.v === undefined ? undefined : { id: String(o.file?.id), size: Number(o.file?.size), mtimeMs: Number(o.file?.mtimeMs) }
  if (fileStat(file.fd).size < pos) changed(file, pos, 'shorter', was, `the file is shorter than that${was === undefined ? '' : `; ${differences(file, was)}`}. It was replaced or truncated`)
  if (o.v === undefined) checkLegacy(file, pos)
  else if (o.v === 2 && fingerprint(file.fd, pos) !== o.file?.fingerprint) changed(file, pos, 'content', was, contentProblem(file, was!))
  const hash = await hashPrefix(file, pos)
  if (o.v === OFFSET_VERSION && hash.copy().digest('hex') !== o.file?.sha256) changed(file, pos, 'content', was, contentProblem(file, was!))
  const badLines = o.v === undefined ? undefined : typeof o.badLines === 'number' ? o.badLines : 0
  return { pos, line: o.line, badLines, hash }
}

/** SHA-256 of the bytes `[0, pos)`, read in large asynchronous reads. */
async function hashPrefix(file: OpenFile, pos: number): Promise<PrefixHash> {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.min(VERIFY_READ_BYTES, Math.max(pos, 1)))
  for (let at = 0; at < pos; ) {
    const { bytesRead } = await readAt(file.fd, buf, 0, Math.min(buf.length, pos - at), at)
    if (bytesRead === 0) changed(file, pos, 'shorter', undefined, `the file became shorter (${at} bytes) while the bytes before the offset were checked`)
    hash.update(buf.subarray(0, bytesRead))
    at += bytesRead
  }
  return hash
}

/** SHA-256 (32 hex digits) of the first and the last {@link FINGERPRINT_EDGE} bytes before `pos`, as version 2 offsets hold. */
function fingerprint(fd: number, pos: number): string {
  const hash = createHash('sha256')
  const headBytes = Math.min(pos, FINGERPRINT_EDGE)
  const tailStart = Math.max(headBytes, pos - FINGERPRINT_EDGE)
  for (const [from, to] of [
    [0, headBytes],
    [tailStart, pos],
  ] as const) {
    const buf = Buffer.alloc(to - from)
    let done = 0
    while (done < buf.length) {
      const got = readSync(fd, buf, done, buf.length - done, from + done)
      if (got === 0) break
      done += got
    }
    hash.update(buf.subarray(0, done))
  }
  return hash.digest('hex').slice(0, 32)
}

function contentProblem(file: OpenFile, was: SourceFileIdentity): string {
  return `the bytes before it are not those read before the snapshot (their SHA-256 differs); ${differences(file, was)}. It was replaced or rewritten`
}

/** What else differs between the file then and now, in words: the inode, the size, the modification time. */
function differences(file: OpenFile, was: SourceFileIdentity): string {
  const now = fileStat(file.fd)
  const what = [
    was.id === now.id ? undefined : `file id ${was.id} then, ${now.id} now`,
    was.size === now.size ? `same size (${now.size} bytes)` : `${was.size} bytes then, ${now.size} now`,
    Number.isFinite(was.mtimeMs) && was.mtimeMs !== now.mtimeMs ? `modified at ${new Date(was.mtimeMs).toISOString()} then, ${new Date(now.mtimeMs).toISOString()} now` : undefined,
  ]
  return what.filter((x) => x !== undefined).join(', ')
}

function changed(file: OpenFile, pos: number, reason: SourceChangeReason, was: SourceFileIdentity | undefined, problem: string): never {
  throw new SourceChangedError(file.operator, file.path, pos, reason, was, fileStat(file.fd), problem)
}

/** An offset from a Weir before offsets carried the file's identity: checked as far as it can be. */
function checkLegacy(file: OpenFile, pos: number): void {
  if (pos === 0 || pos === fileStat(file.fd).size) return
  const before = Buffer.alloc(1)
  readSync(file.fd, before, 0, 1, pos - 1)
  if (before[0] !== 10) changed(file, pos, 'content', undefined, 'it is not at the start of a line (the offset is of an older version, which recorded no checksum). The file was replaced or rewritten')
}

function refuse(file: OpenFile, problem: string): ConnectorError {
  return new ConnectorError(`cannot resume reading ${file.path}: ${problem}; restore a snapshot taken on this file, or start without restoring`, file.operator, false)
}
