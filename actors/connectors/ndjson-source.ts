/**
 * A newline-delimited JSON file as a replayable source. Reading is linear in the file's size
 * (a line is joined once, however many reads it spans), every `poll` reads a bounded number of
 * bytes so a huge line never holds the event loop, and the offset carries a SHA-256 of every byte
 * before it, so a restore against another file (even one of the same size with one line changed)
 * is refused instead of mixing records of two files.
 */
import { createHash, type Hash } from 'node:crypto'
import { closeSync, fstatSync, openSync, read, readSync } from 'node:fs'
import { promisify } from 'node:util'
import type { ConnectorContext, PollResult, Source, SourceReader } from './types.ts'
import { BadLineError, ConnectorError, JobDefinitionError, rejectAsync, SourceChangedError, type BadLineReason, type SourceChangeReason, type SourceFileIdentity } from '../errors.ts'

const readAt = promisify(read)

/** A line that could not be read as a record, as given to an `onBadLine` function. */
export interface BadLine {
  /** The file's path, as given to {@link ndjsonSource}. */
  path: string
  /** The line's number, from 1. */
  line: number
  /** Byte position of the line's first byte in the file. */
  byteOffset: number
  /** What is wrong with it. */
  reason: BadLineReason
  /** What is wrong with it, in words (e.g. the JSON parser's message). */
  message: string
  /** The line's bytes without its newline; of a `'too-long'` line only the first {@link BAD_LINE_PREFIX_BYTES}. */
  bytes: Uint8Array
  /** `bytes` as text, with U+FFFD for bytes that are not UTF-8. */
  text: string
}

/** What an NDJSON source does with a bad line: fail the job, skip it, or hand it to your function. */
export type BadLinePolicy = 'fail' | 'skip' | ((line: BadLine) => void)

/** Options of {@link ndjsonSource}. */
export interface NdjsonSourceOptions {
  /** Path of a file with one JSON value per line. */
  path: string
  /**
   * Longest line accepted, in bytes (without its newline). A longer line is a bad line
   * (`'too-long'`); it is never read into memory whole.
   * @default 16 MiB
   */
  maxLineBytes?: number
  /**
   * What to do with a line that is not JSON, not UTF-8, longer than `maxLineBytes` or (with
   * `partialLastLine: 'bad'`) not terminated: `'fail'` the job with a {@link BadLineError}
   * naming file and line; `'skip'` it (counted, see {@link NdjsonSource.badLines}); or call a
   * function with the {@link BadLine}, a side output of bad lines. The function is called
   * synchronously, and again for lines read again after a restore (at least once).
   * @default 'fail'
   */
  onBadLine?: BadLinePolicy
  /**
   * A last line without a newline: `'settled'` reads it as a record once the file has not been
   * modified for `settleMs` (until then the source waits, and reads on if the file grows, so a
   * half-written line is never parsed); `'bad'` makes it a bad line (`'unterminated'`).
   * @default 'settled'
   */
  partialLastLine?: 'settled' | 'bad'
  /**
   * How long a file must go unmodified before an unterminated last line counts as complete.
   * @default 1000
   */
  settleMs?: number
}

/** An {@link ndjsonSource}: a source that also counts the bad lines it skipped. */
export interface NdjsonSource<T> extends Source<T> {
  /**
   * Bad lines skipped or handed to `onBadLine` so far, over all instances of the latest run
   * in this process; it includes those counted before the checkpoint a run restored from.
   */
  badLines(): number
}

/** Bytes of a too-long line kept for its {@link BadLine}. */
export const BAD_LINE_PREFIX_BYTES = 1024
const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
const DEFAULT_SETTLE_MS = 1000
/** Size of one read. */
const READ_BYTES = 64 * 1024
/** Bytes one `poll` reads at most before it yields to the event loop. */
export const POLL_READ_BUDGET = 1024 * 1024
/** Bytes at each end of the read part of the file that the fingerprint of a version 2 offset covers. */
const FINGERPRINT_EDGE = 4096
/** Size of one read when a restore checks the bytes before the offset. */
const VERIFY_READ_BYTES = 1024 * 1024
const OFFSET_VERSION = 3
const OPTION_KEYS = new Set(['path', 'maxLineBytes', 'onBadLine', 'partialLastLine', 'settleMs'])

/**
 * Offset of an NDJSON reader. `pos` and `line` are where the next line starts; `file` says
 * which file they belong to. Older versions: without `v`, `{ pos, line }`; version 2 has
 * `file.fingerprint` (of the first and last 4 KiB before `pos`) instead of `file.sha256`.
 */
interface NdjsonOffset {
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
interface FileIdentity extends SourceFileIdentity {
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

/** Whitespace JSON allows around a value (and `trim()` removes): space, tab, CR. */
const isSpace = (byte: number) => byte === 32 || byte === 9 || byte === 13

/** Resolved options. */
interface NdjsonConfig {
  path: string
  maxLineBytes: number
  onBadLine: BadLinePolicy
  partialLastLine: 'settled' | 'bad'
  settleMs: number
}

function resolve(options: NdjsonSourceOptions): NdjsonConfig {
  if (typeof options?.path !== 'string' || options.path === '') throw new JobDefinitionError('ndjsonSource needs { path }')
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw new JobDefinitionError(`ndjsonSource: unknown option '${key}'; known are ${[...OPTION_KEYS].join(', ')}`)
  }
  const { maxLineBytes = DEFAULT_MAX_LINE_BYTES, onBadLine = 'fail', partialLastLine = 'settled', settleMs = DEFAULT_SETTLE_MS } = options
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    throw new JobDefinitionError(`ndjsonSource: maxLineBytes must be a positive integer, got ${String(maxLineBytes)}`)
  }
  if (onBadLine !== 'fail' && onBadLine !== 'skip' && typeof onBadLine !== 'function') {
    throw new JobDefinitionError(`ndjsonSource: onBadLine must be 'fail', 'skip' or a function, got ${String(onBadLine)}`)
  }
  rejectAsync(onBadLine, 'ndjsonSource: onBadLine')
  if (partialLastLine !== 'settled' && partialLastLine !== 'bad') {
    throw new JobDefinitionError(`ndjsonSource: partialLastLine must be 'settled' or 'bad', got ${String(partialLastLine)}`)
  }
  if (!Number.isSafeInteger(settleMs) || settleMs < 0 || settleMs > 2 ** 31 - 1) {
    throw new JobDefinitionError(`ndjsonSource: settleMs must be an integer from 0 to 2147483647, got ${String(settleMs)}`)
  }
  return { path: options.path, maxLineBytes, onBadLine, partialLastLine, settleMs }
}

/**
 * Reads a newline-delimited JSON file; blank lines are skipped. With parallelism `p`, instance
 * `i` takes the lines with `lineNumber % p === i`; a restore needs the same parallelism. Bad
 * lines (not JSON, not UTF-8, too long) fail the job by default; see {@link NdjsonSourceOptions}.
 * @example
 * const payments = ndjsonSource<Payment>({ path: 'payments.ndjson', onBadLine: 'skip' })
 * job('payments').source('in', payments) // ... after the run: payments.badLines()
 */
export function ndjsonSource<T>(options: NdjsonSourceOptions): NdjsonSource<T> {
  const config = resolve(options)
  const readers = new Map<number, NdjsonReader<T>>()
  return {
    kind: 'ndjson',
    open(ctx: ConnectorContext): SourceReader<T> {
      const reader = new NdjsonReader<T>(config, ctx)
      readers.set(ctx.instance, reader)
      return reader
    },
    badLines() {
      let n = 0
      for (const r of readers.values()) n += r.badLines
      return n
    },
  }
}

/** Counters of a reader's work, for tests of its cost. */
export interface NdjsonReaderStats {
  /** Bytes read from the file. */
  bytesRead: number
  /** Bytes copied to join the pieces of lines that span reads. */
  bytesCopied: number
  /** Calls of `readSync`. */
  reads: number
}

/** One instance's reader of an NDJSON file. Internal; exported for tests. */
export class NdjsonReader<T> implements SourceReader<T> {
  readonly stats: NdjsonReaderStats = { bytesRead: 0, bytesCopied: 0, reads: 0 }
  /** Bad lines skipped or handed to `onBadLine`, including those counted before the restored offset. */
  badLines = 0
  private readonly fd: number
  private readonly path: string
  private readonly decoder = new TextDecoder('utf-8', { fatal: true })
  /** Bytes read and not yet consumed: `chunk[chunkStart..]`. */
  private chunk: Buffer = Buffer.alloc(0)
  private chunkStart = 0
  /** A buffer to read into; `undefined` while pieces of it are held in `parts`. */
  private spare: Buffer | undefined
  /** Earlier pieces of the current line, which spans reads. */
  private parts: Buffer[] = []
  private partsBytes = 0
  /** Set while the current line is longer than the limit: its bytes are dropped, its start kept. */
  private tooLong: Buffer | undefined
  private tooLongBytes = 0
  /** File position just after `chunk`. */
  private readPos = 0
  /** Start and number (from 0) of the current line. */
  private pos = 0
  private line = 0
  /**
   * SHA-256 of the bytes consumed so far, fed as lines end (not as they are read, which runs
   * ahead of `pos`): it covers `[0, pos)` but for `chunk[hashFrom..chunkStart)`, fed in one
   * update before the chunk is replaced or an offset is taken (one call per line would cost
   * more than the hashing itself on short lines).
   */
  private hash: Hash = createHash('sha256')
  private hashFrom = 0
  /** While the current line is too long: the hash including its bytes dropped so far (they are not kept to hash at its end). */
  private pending: Hash | undefined
  private identityAt: { pos: number; file: FileIdentity } | undefined
  /** Size and modification time of the file since when they have not changed, while a last line waits. */
  private unchanged: { size: number; mtimeMs: number; since: number } | undefined

  constructor(
    private readonly config: NdjsonConfig,
    private readonly ctx: ConnectorContext,
  ) {
    this.path = config.path
    try {
      this.fd = openSync(this.path, 'r')
    } catch (err) {
      throw new ConnectorError(`cannot open ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, ctx.operator, false, err)
    }
  }

  /**
   * Checks that the file is the one the offset was taken on and resumes there. It reads the
   * bytes before the offset once, to check their SHA-256 and to go on hashing from there; the
   * reads are asynchronous so a large file does not hold the event loop (heartbeats, timers).
   */
  async restore(offset: unknown): Promise<void> {
    const o = offset as (Partial<Omit<NdjsonOffset, 'v' | 'file'>> & { v?: unknown; file?: Partial<FileIdentity & FileIdentityV2> }) | null
    if (typeof o?.pos !== 'number' || typeof o.line !== 'number' || !Number.isSafeInteger(o.pos) || o.pos < 0) {
      throw this.refuse(`not an ndjson offset: ${JSON.stringify(offset)}`)
    }
    const pos = o.pos
    if (o.v !== undefined && o.v !== 2 && o.v !== OFFSET_VERSION) throw this.refuse(`offset format ${String(o.v)} is newer than this version of Weir reads`)
    if (o.v !== undefined && (typeof o.file !== 'object' || o.file === null)) throw this.refuse(`not an ndjson offset: ${JSON.stringify(offset)}`)
    if (o.v !== undefined && o.parallelism !== this.ctx.parallelism) {
      throw this.refuse(
        `the snapshot's offsets were taken with parallelism ${String(o.parallelism)}, this run has ${this.ctx.parallelism}; ` +
          `an ndjson source cannot be rescaled: run it with parallelism ${String(o.parallelism)}, or start without restoring`,
      )
    }
    const was = o.v === undefined ? undefined : { id: String(o.file?.id), size: Number(o.file?.size), mtimeMs: Number(o.file?.mtimeMs) }
    if (this.stat().size < pos) this.changed(pos, 'shorter', was, `the file is shorter than that${was === undefined ? '' : `; ${this.differences(was)}`}. It was replaced or truncated`)
    if (o.v === undefined) this.checkLegacy(pos)
    else if (o.v === 2 && this.fingerprint(pos) !== o.file?.fingerprint) this.changed(pos, 'content', was, this.contentProblem(was!))
    const hash = await this.hashPrefix(pos)
    if (o.v === OFFSET_VERSION && hash.copy().digest('hex') !== o.file?.sha256) this.changed(pos, 'content', was, this.contentProblem(was!))
    if (o.v !== undefined) this.badLines = typeof o.badLines === 'number' ? o.badLines : 0
    this.pos = this.readPos = pos
    this.line = o.line
    this.unchanged = undefined
    this.chunk = Buffer.alloc(0)
    this.chunkStart = 0
    this.hash = hash
    this.hashFrom = 0
    this.identityAt = undefined
    this.dropLine()
  }

  poll(emit: (record: T) => void, max: number): PollResult {
    let emitted = 0
    let budget = POLL_READ_BUDGET
    while (emitted < max) {
      const nl = this.chunk.indexOf(10, this.chunkStart)
      if (nl >= 0) {
        if (this.endLine(nl, emit)) emitted++
        continue
      }
      this.keepTail()
      if (budget <= 0) return 'more'
      const buf = this.spare ?? Buffer.allocUnsafe(READ_BYTES)
      const got = readSync(this.fd, buf, 0, buf.length, this.readPos)
      this.stats.reads++
      this.stats.bytesRead += got
      budget -= got
      this.spare = buf
      this.chunk = buf.subarray(0, got)
      this.chunkStart = 0
      this.hashFrom = 0
      this.readPos += got
      if (got > 0) continue
      const atEnd = this.atEndOfFile(emit)
      if (atEnd === 'emitted') emitted++
      else if (atEnd !== 'continue') return atEnd
    }
    return 'more'
  }

  offset(): NdjsonOffset {
    return { v: OFFSET_VERSION, pos: this.pos, line: this.line, parallelism: this.ctx.parallelism, badLines: this.badLines, file: this.identity() }
  }

  close(): void {
    closeSync(this.fd)
  }

  /** Ends the current line at `chunk[nl]` (a newline, or the end of the file); returns true if a record was emitted. */
  private endLine(nl: number, emit: (record: T) => void): boolean {
    const line = this.line
    const start = this.pos
    const mine = line % this.ctx.parallelism === this.ctx.instance
    const piece = this.chunk.subarray(this.chunkStart, nl)
    const length = this.partsBytes + this.tooLongBytes + piece.length
    this.chunkStart = Math.min(nl + 1, this.chunk.length)
    this.pos += length + (nl < this.chunk.length ? 1 : 0)
    this.line++
    this.hashHeldPieces()
    if (!mine) {
      this.dropLine()
      return false
    }
    if (this.tooLong !== undefined || length > this.config.maxLineBytes) {
      const prefix = this.prefix(piece)
      this.dropLine()
      this.bad(line, start, 'too-long', `longer than maxLineBytes (${this.config.maxLineBytes} bytes)`, prefix)
      return false
    }
    const bytes = this.join(piece)
    this.dropLine()
    let text: string
    try {
      text = this.decoder.decode(bytes)
    } catch {
      this.bad(line, start, 'invalid-utf8', 'not valid UTF-8', bytes)
      return false
    }
    text = text.trim()
    if (text === '') return false
    let value: T
    try {
      value = JSON.parse(text) as T
    } catch (err) {
      this.bad(line, start, 'not-json', `not JSON (${(err as Error).message})`, bytes)
      return false
    }
    emit(value)
    return true
  }

  /** Keeps the unconsumed rest of `chunk` as a piece of the current line; checks the line's length. */
  private keepTail(): void {
    this.hashConsumed()
    const tail = this.chunk.subarray(this.chunkStart)
    this.chunk = tail.subarray(tail.length)
    this.chunkStart = 0
    this.hashFrom = 0
    if (tail.length === 0) return
    if (this.tooLong !== undefined) {
      this.tooLongBytes += tail.length
      this.pending!.update(tail)
      return
    }
    this.parts.push(tail)
    this.partsBytes += tail.length
    this.spare = undefined // the piece lives in it
    if (this.partsBytes <= this.config.maxLineBytes) return
    // Too long: fail now, or keep only the start of it and drop the rest as it is read.
    const mine = this.line % this.ctx.parallelism === this.ctx.instance
    const prefix = this.prefix(Buffer.alloc(0))
    if (mine && this.config.onBadLine === 'fail') {
      this.bad(this.line, this.pos, 'too-long', `longer than maxLineBytes (${this.config.maxLineBytes} bytes)`, prefix)
    }
    this.tooLongBytes = this.partsBytes
    this.tooLong = prefix
    // The line's bytes are not kept to its end, so they are hashed as they go, on a copy: the
    // offset stays at the line's start until it ends.
    this.pending = this.hash.copy()
    for (const part of this.parts) this.pending.update(part)
    this.parts = []
    this.partsBytes = 0
  }

  /** The current line's bytes: its earlier pieces and `last`, joined by one copy if it spans reads. */
  private join(last: Buffer): Buffer {
    if (this.parts.length === 0) return last
    const bytes = Buffer.concat([...this.parts, last], this.partsBytes + last.length)
    this.stats.bytesCopied += bytes.length
    return bytes
  }

  /** A copy of the first {@link BAD_LINE_PREFIX_BYTES} of the current line, ending with `last`. */
  private prefix(last: Buffer): Buffer {
    if (this.tooLong !== undefined) return this.tooLong
    return Buffer.concat([...this.parts, last], Math.min(BAD_LINE_PREFIX_BYTES, this.partsBytes + last.length))
  }

  private dropLine(): void {
    if (this.parts.length > 0) this.parts = []
    this.partsBytes = 0
    this.tooLong = undefined
    this.tooLongBytes = 0
    this.pending = undefined
  }

  /** Feeds the hash the consumed bytes of the current chunk it has not had yet. */
  private hashConsumed(): void {
    if (this.chunkStart <= this.hashFrom) return
    this.hash.update(this.chunk.subarray(this.hashFrom, this.chunkStart))
    this.hashFrom = this.chunkStart
  }

  /**
   * The current line ends: feeds the hash the pieces of it held from earlier reads (or takes the
   * hash that had its dropped bytes). They precede every unhashed byte of the current chunk:
   * a held piece means the line began before this chunk, of which nothing is hashed yet.
   */
  private hashHeldPieces(): void {
    if (this.pending !== undefined) {
      this.hash = this.pending
      this.pending = undefined
      return
    }
    for (const part of this.parts) this.hash.update(part)
  }

  /**
   * The end of the file is reached. Nothing pending: the source ends. A last line without a
   * newline: a record or a bad line by `partialLastLine`, or wait while the file is written to.
   */
  private atEndOfFile(emit: (record: T) => void): 'emitted' | 'continue' | 'idle' | 'end' {
    const stat = fstatSync(this.fd)
    if (stat.size < this.readPos) {
      throw new ConnectorError(
        `${this.path} shrank from ${this.readPos} to ${stat.size} bytes while it was read: it was truncated; a file source needs a file that only grows`,
        this.ctx.operator,
        false,
      )
    }
    if (stat.size > this.readPos) return 'continue'
    if (this.partsBytes + this.tooLongBytes === 0) return 'end'
    if (this.config.partialLastLine === 'settled') {
      if (!this.settled(stat.size, stat.mtimeMs)) return 'idle'
      // Settled: the line ends where the file ends.
      this.unchanged = undefined
      return this.endLine(this.chunk.length, emit) ? 'emitted' : 'continue'
    }
    const line = this.line
    const start = this.pos
    const mine = line % this.ctx.parallelism === this.ctx.instance
    const bytes = this.tooLong ?? this.join(Buffer.alloc(0))
    const blank = this.tooLong === undefined && bytes.every(isSpace)
    this.pos = this.readPos
    this.line++
    this.hashHeldPieces()
    this.dropLine()
    if (mine && !blank) this.bad(line, start, 'unterminated', 'the last line has no newline (the file may still be being written)', bytes)
    return 'continue'
  }

  /**
   * Whether the file has not been modified for `settleMs`: by its modification time, or (should
   * the file system's clock be ahead of ours) by our own watch of its size and time.
   */
  private settled(size: number, mtimeMs: number): boolean {
    const now = Date.now()
    if (now - mtimeMs >= this.config.settleMs) return true
    const seen = this.unchanged
    if (seen === undefined || seen.size !== size || seen.mtimeMs !== mtimeMs) {
      this.unchanged = { size, mtimeMs, since: now }
      return false
    }
    return now - seen.since >= this.config.settleMs
  }

  /** A bad line, handled by the `onBadLine` policy. */
  private bad(line: number, byteOffset: number, reason: BadLineReason, message: string, bytes: Uint8Array): void {
    const policy = this.config.onBadLine
    if (policy === 'fail') throw new BadLineError(this.ctx.operator, this.path, line + 1, reason, message)
    this.badLines++
    if (policy === 'skip') return
    // A copy: the bytes may be a view of a buffer the reader reuses.
    const copy = new Uint8Array(bytes)
    policy({ path: this.path, line: line + 1, byteOffset, reason, message, bytes: copy, text: Buffer.from(copy).toString('utf8') })
  }

  /** The file's identity at the current offset, computed again only when the offset moved. */
  private identity(): FileIdentity {
    if (this.identityAt?.pos === this.pos) return this.identityAt.file
    this.hashConsumed()
    // A copy: the hash goes on with the next lines.
    const file = { ...this.stat(), sha256: this.hash.copy().digest('hex') }
    this.identityAt = { pos: this.pos, file }
    return file
  }

  private stat(): SourceFileIdentity {
    const stat = fstatSync(this.fd, { bigint: true })
    return { id: `${stat.dev}:${stat.ino}`, size: Number(stat.size), mtimeMs: Number(stat.mtimeMs) }
  }

  /** SHA-256 of the bytes `[0, pos)`, read in large asynchronous reads. */
  private async hashPrefix(pos: number): Promise<Hash> {
    const hash = createHash('sha256')
    const buf = Buffer.allocUnsafe(Math.min(VERIFY_READ_BYTES, Math.max(pos, 1)))
    for (let at = 0; at < pos; ) {
      const { bytesRead } = await readAt(this.fd, buf, 0, Math.min(buf.length, pos - at), at)
      if (bytesRead === 0) this.changed(pos, 'shorter', undefined, `the file became shorter (${at} bytes) while the bytes before the offset were checked`)
      hash.update(buf.subarray(0, bytesRead))
      at += bytesRead
    }
    return hash
  }

  /** SHA-256 (32 hex digits) of the first and the last {@link FINGERPRINT_EDGE} bytes before `pos`, as version 2 offsets hold. */
  private fingerprint(pos: number): string {
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
        const got = readSync(this.fd, buf, done, buf.length - done, from + done)
        if (got === 0) break
        done += got
      }
      hash.update(buf.subarray(0, done))
    }
    return hash.digest('hex').slice(0, 32)
  }

  private contentProblem(was: SourceFileIdentity): string {
    return `the bytes before it are not those read before the snapshot (their SHA-256 differs); ${this.differences(was)}. It was replaced or rewritten`
  }

  /** What else differs between the file then and now, in words: the inode, the size, the modification time. */
  private differences(was: SourceFileIdentity): string {
    const now = this.stat()
    const what = [
      was.id === now.id ? undefined : `file id ${was.id} then, ${now.id} now`,
      was.size === now.size ? `same size (${now.size} bytes)` : `${was.size} bytes then, ${now.size} now`,
      Number.isFinite(was.mtimeMs) && was.mtimeMs !== now.mtimeMs ? `modified at ${new Date(was.mtimeMs).toISOString()} then, ${new Date(now.mtimeMs).toISOString()} now` : undefined,
    ]
    return what.filter((x) => x !== undefined).join(', ')
  }

  private changed(pos: number, reason: SourceChangeReason, was: SourceFileIdentity | undefined, problem: string): never {
    throw new SourceChangedError(this.ctx.operator, this.path, pos, reason, was, this.stat(), problem)
  }

  /** An offset from a Weir before offsets carried the file's identity: checked as far as it can be. */
  private checkLegacy(pos: number): void {
    if (pos === 0 || pos === this.stat().size) return
    const before = Buffer.alloc(1)
    readSync(this.fd, before, 0, 1, pos - 1)
    if (before[0] !== 10) this.changed(pos, 'content', undefined, 'it is not at the start of a line (the offset is of an older version, which recorded no checksum). The file was replaced or rewritten')
  }

  private refuse(problem: string): ConnectorError {
    return new ConnectorError(`cannot resume reading ${this.path}: ${problem}; restore a snapshot taken on this file, or start without restoring`, this.ctx.operator, false)
  }
}
