/**
 * A newline-delimited JSON file as a replayable source. Reading is linear in the file's size
 * (a line is joined once, however many reads it spans), every `poll` reads a bounded number of
 * bytes so a huge line never holds the event loop, and the offset carries a SHA-256 of every byte
 * before it, so a restore against another file (even one of the same size with one line changed)
 * is refused instead of mixing records of two files.
 *
 * This file holds the source and its reader; the options are actors/connectors/ndjson-options.ts,
 * the offset and the file identity check actors/connectors/ndjson-offset.ts.
 */
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import type { ConnectorContext, PollResult, SourceReader } from './types.ts'
import { BadLineError, ConnectorError, type BadLineReason } from '../errors.ts'
import { BAD_LINE_PREFIX_BYTES, resolveNdjsonOptions, type NdjsonConfig, type NdjsonSource, type NdjsonSourceOptions } from './ndjson-options.ts'
import { checkOffset, fileStat, OFFSET_VERSION, type FileIdentity, type NdjsonOffset, type PrefixHash } from './ndjson-offset.ts'

/** Size of one read. */
const READ_BYTES = 64 * 1024
/** Bytes one `poll` reads at most before it yields to the event loop. */
export const POLL_READ_BUDGET = 1024 * 1024

/** Whitespace JSON allows around a value (and `trim()` removes): space, tab, CR. */
const isSpace = (byte: number) => byte === 32 || byte === 9 || byte === 13

/**
 * Reads a newline-delimited JSON file; blank lines are skipped. With parallelism `p`, instance
 * `i` takes the lines with `lineNumber % p === i`; a restore needs the same parallelism. Bad
 * lines (not JSON, not UTF-8, too long) fail the job by default; see {@link NdjsonSourceOptions}.
 * @example
 * const payments = ndjsonSource<Payment>({ path: 'payments.ndjson', onBadLine: 'skip' })
 * job('payments').source('in', payments) // ... after the run: payments.badLines()
 */
export function ndjsonSource<T>(options: NdjsonSourceOptions): NdjsonSource<T> {
  const config = resolveNdjsonOptions(options)
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
  /** The open file and its path and operator, as `checkOffset` takes them. */
  readonly fd: number
  readonly path: string
  readonly operator: string
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
  private hash: PrefixHash = createHash('sha256')
  private hashFrom = 0
  /** While the current line is too long: the hash including its bytes dropped so far (they are not kept to hash at its end). */
  private pending: PrefixHash | undefined
  private identityAt: { pos: number; file: FileIdentity } | undefined
  /** Size and modification time of the file since when they have not changed, while a last line waits. */
  private unchanged: { size: number; mtimeMs: number; since: number } | undefined

  constructor(
    private readonly config: NdjsonConfig,
    private readonly ctx: ConnectorContext,
  ) {
    this.path = config.path
    this.operator = ctx.operator
    try {
      this.fd = openSync(this.path, 'r')
    } catch (err) {
      throw new ConnectorError(`cannot open ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, ctx.operator, false, err)
    }
  }

  /** Checks that the file is the one the offset was taken on (see `checkOffset`) and resumes there. */
  async restore(offset: unknown): Promise<void> {
    const at = await checkOffset(this, offset, this.ctx.parallelism)
    if (at.badLines !== undefined) this.badLines = at.badLines
    this.pos = this.readPos = at.pos
    this.line = at.line
    this.unchanged = undefined
    this.chunk = Buffer.alloc(0)
    this.chunkStart = 0
    this.hash = at.hash
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
    const file = { ...fileStat(this.fd), sha256: this.hash.copy().digest('hex') }
    this.identityAt = { pos: this.pos, file }
    return file
  }
}
