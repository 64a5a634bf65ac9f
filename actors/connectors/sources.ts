/**
 * Replayable sources: a deterministic generator (tests, benchmarks, demos) and a
 * newline-delimited JSON file (in ndjson-source.ts). Both resume exactly from a checkpointed offset.
 */
import type { ConnectorContext, PollResult, Source, SourceReader } from './types.ts'
import { JobDefinitionError } from '../errors.ts'

export { ndjsonSource } from './ndjson-source.ts'
export type { BadLine, BadLinePolicy, NdjsonSource, NdjsonSourceOptions } from './ndjson-options.ts'

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
  /**
   * Makes the source rescalable: the positions are cut into `splits` splits (split `s` holds the
   * positions `seq` with `seq % splits === s`), assigned round-robin to the instances (split `s`
   * to instance `s % parallelism`), and each instance's offset is the list of its splits with the
   * next position of each. A snapshot then restores at any source parallelism, each record read
   * exactly once. More splits than instances spread the work better after a rescale. Changing
   * `splits` across a restore is refused.
   * @default none: instance `i` of `p` reads `seq % p === i`, and the parallelism is fixed
   */
  splits?: number
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
  if (options.splits !== undefined) {
    const splits = positiveInt('splits', options.splits)
    return { kind: 'generator', rescalable: true, open: (ctx) => splitReader(ctx, { records, keys, seedHash, rate, splits }) }
  }
  // Shared by the instances: each key is one string, whichever instance emits it.
  // Sized up front: filling a growing array at random indexes would turn it into a slow dictionary.
  const names: (string | undefined)[] = new Array<string | undefined>(keys)
  const name = (i: number) => names[i] ?? (names[i] = `k${i}`)
  return {
    kind: 'generator',
    open(ctx: ConnectorContext): SourceReader<GeneratedRecord> {
      const step = ctx.parallelism
      let next = ctx.instance
      let startedAt = performance.now()
      let startedFrom = next
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

/** One split of a rescalable generator: `[split, next position]` (the wire form of its offset). */
type SplitState = [split: number, next: number]

/**
 * A reader of a generator with splits. It emits the positions of its splits in increasing order
 * (always the smallest next position first), so its output is in sequence order like a plain
 * instance's.
 */
function splitReader(ctx: ConnectorContext, o: { records: number; keys: number; seedHash: number; rate: number | undefined; splits: number }): SourceReader<GeneratedRecord> {
  const { records, keys, seedHash, rate, splits } = o
  let owned: SplitState[] = []
  for (let s = ctx.instance; s < splits; s += ctx.parallelism) owned.push([s, s])
  let startedAt = performance.now()
  let emitted = 0
  const names: (string | undefined)[] = new Array<string | undefined>(keys)
  const name = (i: number) => names[i] ?? (names[i] = `k${i}`)
  const smallest = (): SplitState | undefined => {
    let best: SplitState | undefined
    for (const s of owned) if (s[1] < records && (best === undefined || s[1] < best[1])) best = s
    return best
  }
  return {
    restore(offset) {
      if (!Array.isArray(offset)) throw new Error(`generator offset ${String(offset)} is not a list of splits: the snapshot was taken without the splits option`)
      const seen = new Set<number>()
      owned = offset.map((x: unknown) => {
        const [s, next] = Array.isArray(x) ? (x as unknown[]) : []
        if (typeof s !== 'number' || typeof next !== 'number' || !Number.isInteger(s) || !Number.isInteger(next) || s < 0 || s >= splits || next < s || next % splits !== s || seen.has(s)) {
          throw new Error(`generator split state ${JSON.stringify(x)} does not fit ${splits} splits (was the splits option changed?)`)
        }
        seen.add(s)
        return [s, next] as SplitState
      })
      startedAt = performance.now()
      emitted = 0
    },
    poll(emit, max): PollResult {
      let n = max
      if (rate !== undefined) {
        const allowed = Math.floor(((performance.now() - startedAt) * rate) / 1000 / ctx.parallelism) - emitted
        if (allowed <= 0) return smallest() === undefined ? 'end' : 'idle'
        n = Math.min(n, allowed)
      }
      for (let i = 0; i < n; i++) {
        const s = smallest()
        if (s === undefined) return 'end'
        const seq = s[1]
        s[1] += splits
        emitted++
        const h = mix(seq ^ seedHash)
        emit({ key: name(h % keys), value: (mix(h) % 100) + 1, seq })
      }
      return smallest() === undefined ? 'end' : 'more'
    },
    offset: () => owned.map((s) => [s[0], s[1]]),
  }
}
