/**
 * The options of an NDJSON source, its bad-line policy and the resolver that checks them when
 * the source is made (the defaults written once, here). The reader is
 * actors/connectors/ndjson-source.ts.
 */
import type { Source } from './types.ts'
import { JobDefinitionError, rejectAsync, type BadLineReason } from '../errors.ts'

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
const OPTION_KEYS = new Set(['path', 'maxLineBytes', 'onBadLine', 'partialLastLine', 'settleMs'])

/** Resolved options. */
export interface NdjsonConfig {
  path: string
  maxLineBytes: number
  onBadLine: BadLinePolicy
  partialLastLine: 'settled' | 'bad'
  settleMs: number
}

/** Checks the options of an {@link ndjsonSource} and fills in the defaults; throws `JobDefinitionError` on a bad one. */
export function resolveNdjsonOptions(options: NdjsonSourceOptions): NdjsonConfig {
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
