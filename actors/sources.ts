/**
 * Replayable sources: a deterministic generator (tests, benchmarks, demos) and a
 * newline-delimited JSON file (in ndjson-source.ts). Both resume exactly from a checkpointed offset.
 */
import type { ConnectorContext, PollResult, Source, SourceReader } from './connectors.ts'
import { JobDefinitionError } from './errors.ts'

export { ndjsonSource } from './ndjson-source.ts'
export type { BadLine, BadLinePolicy, NdjsonSource, NdjsonSourceOptions } from './ndjson-source.ts'

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
