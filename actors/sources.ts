/**
 * Replayable sources: a deterministic generator (tests, benchmarks, demos) and a
 * newline-delimited JSON file. Both resume exactly from a checkpointed offset.
 */
import { closeSync, openSync, readSync } from 'node:fs'
import type { ConnectorContext, PollResult, Source, SourceReader } from './connectors.ts'
import { ConnectorError, JobDefinitionError } from './errors.ts'

/** A record of {@link generatorSource}. */
export interface GeneratedRecord {
  /** One of `keys` keys: `k0`, `k1`, ... */
  key: string
  /** An amount from 1 to 100. */
  value: number
  /** The record's position in the whole sequence, from 0. */
  seq: number
}

/** Options of {@link generatorSource}. */
export interface GeneratorOptions {
  /** Number of records in all. */
  records: number
  /** Number of distinct keys. */
  keys: number
  /** Seed of the sequence. @default 1 */
  seed?: number
  /** Records per second over all instances; unlimited when absent. */
  ratePerSecond?: number
}

function mix(x: number): number {
  // A 32-bit integer hash (finalizer of murmur3): cheap, well spread, deterministic.
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

/** The record at position `seq` of a generator's sequence: what a test computes its expected results from. */
export function generatedRecord(options: Pick<GeneratorOptions, 'keys' | 'seed'>, seq: number): GeneratedRecord {
  const h = mix(seq ^ mix(options.seed ?? 1))
  return { key: `k${h % options.keys}`, value: (mix(h) % 100) + 1, seq }
}

function positiveInt(name: string, value: unknown, zeroOk = false): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (zeroOk ? 0 : 1)) {
    throw new JobDefinitionError(`generatorSource: ${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, got ${String(value)}`)
  }
  return value
}

/**
 * A deterministic source of `records` records over `keys` keys. Instance `i` of `p` emits the
 * positions `seq` with `seq % p === i`; its offset is the next position.
 * @example
 * job('demo').source('in', generatorSource({ records: 1_000_000, keys: 100_000 }))
 */
export function generatorSource(options: GeneratorOptions): Source<GeneratedRecord> {
  const records = positiveInt('records', options?.records, true)
  const keys = positiveInt('keys', options.keys)
  const seed = options.seed ?? 1
  const rate = options.ratePerSecond
  if (rate !== undefined && (typeof rate !== 'number' || !(rate > 0))) throw new JobDefinitionError(`generatorSource: ratePerSecond must be a positive number, got ${String(rate)}`)
  const seedHash = mix(seed)
  return {
    kind: 'generator',
    open(ctx: ConnectorContext): SourceReader<GeneratedRecord> {
      const step = ctx.parallelism
      let next = ctx.instance
      let startedAt = performance.now()
      let startedFrom = next
      // Sized up front: filling a growing array at random indexes would turn it into a slow dictionary.
      const names: (string | undefined)[] = new Array<string | undefined>(keys)
      const name = (i: number) => names[i] ?? (names[i] = `k${i}`)
      return {
        restore(offset) {
          if (typeof offset !== 'number' || offset % step !== ctx.instance) throw new Error(`generator offset ${String(offset)} does not belong to instance ${ctx.instance} of ${step}`)
          next = startedFrom = offset
          startedAt = performance.now()
        },
        poll(emit, max): PollResult {
          if (next >= records) return 'end'
          let n = max
          if (rate !== undefined) {
            const allowed = Math.floor(((performance.now() - startedAt) * rate) / 1000 / step) - (next - startedFrom) / step
            if (allowed <= 0) return 'idle'
            n = Math.min(n, allowed)
          }
          for (let i = 0; i < n && next < records; i++, next += step) {
            const h = mix(next ^ seedHash)
            emit({ key: name(h % keys), value: (mix(h) % 100) + 1, seq: next })
          }
          return next >= records ? 'end' : 'more'
        },
        offset: () => next,
      }
    },
  }
}

/** Options of {@link ndjsonSource}. */
export interface NdjsonSourceOptions {
  /** Path of a file with one JSON value per line. */
  path: string
}

/** Offset of an NDJSON reader: the byte position and number of the next line. */
interface NdjsonOffset {
  pos: number
  line: number
}

/**
 * Reads a newline-delimited JSON file; blank lines are skipped. With parallelism `p`, instance
 * `i` takes the lines with `lineNumber % p === i`. A line that is not JSON fails the job with
 * its file and line number.
 */
export function ndjsonSource<T>(options: NdjsonSourceOptions): Source<T> {
  if (typeof options?.path !== 'string' || options.path === '') throw new JobDefinitionError('ndjsonSource needs { path }')
  const path = options.path
  return {
    kind: 'ndjson',
    open(ctx: ConnectorContext): SourceReader<T> {
      let fd: number
      try {
        fd = openSync(path, 'r')
      } catch (err) {
        throw new ConnectorError(`cannot open ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, ctx.operator, false, err)
      }
      const buf = Buffer.alloc(64 * 1024)
      let pending = Buffer.alloc(0)
      let readPos = 0 // file position of the end of `pending`
      let at: NdjsonOffset = { pos: 0, line: 0 }
      let eof = false
      return {
        restore(offset) {
          const o = offset as NdjsonOffset
          if (typeof o?.pos !== 'number' || typeof o.line !== 'number') throw new Error(`not an ndjson offset: ${JSON.stringify(offset)}`)
          at = { pos: o.pos, line: o.line }
          readPos = o.pos
          pending = Buffer.alloc(0)
        },
        poll(emit, max): PollResult {
          let n = 0
          while (n < max) {
            let nl = pending.indexOf(10)
            if (nl < 0) {
              if (eof) {
                if (pending.length > 0) nl = pending.length
                else return 'end'
              } else {
                const got = readSync(fd, buf, 0, buf.length, readPos)
                if (got === 0) eof = true
                readPos += got
                pending = Buffer.concat([pending, buf.subarray(0, got)])
                continue
              }
            }
            const lineBytes = pending.subarray(0, nl)
            pending = pending.subarray(Math.min(nl + 1, pending.length))
            const line = at.line
            at = { pos: at.pos + nl + 1, line: line + 1 }
            if (line % ctx.parallelism !== ctx.instance) continue
            const text = lineBytes.toString('utf8').trim()
            if (text === '') continue
            let value: T
            try {
              value = JSON.parse(text) as T
            } catch (err) {
              throw new ConnectorError(`${path}:${line + 1}: not JSON (${(err as Error).message})`, ctx.operator, false, err)
            }
            emit(value)
            n++
          }
          return 'more'
        },
        offset: () => ({ pos: Math.min(at.pos, readPos), line: at.line }),
        close() {
          closeSync(fd)
        },
      }
    },
  }
}
