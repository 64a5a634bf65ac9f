/**
 * Shared by the window tests and the window fixture: a replayable source over an array, the
 * events of the window jobs (derived from the generator, with event times out of order), and
 * the results those jobs must produce, computed directly.
 */
import { generatedRecord, type Source } from '../../index.ts'

/** A replayable source over `records`: instance `i` of `p` emits the indexes `i, i + p, ...`; the offset is the next index. */
export function listSource<T>(records: readonly T[], ratePerSecond?: number): Source<T> {
  return {
    kind: 'list',
    open(ctx) {
      let next = ctx.instance
      let startedAt = performance.now()
      let startedFrom = next
      return {
        restore(offset) {
          next = startedFrom = offset as number
          startedAt = performance.now()
        },
        poll(emit, max) {
          if (next >= records.length) return 'end'
          let n = max
          if (ratePerSecond !== undefined) {
            const allowed = Math.floor(((performance.now() - startedAt) * ratePerSecond) / 1000 / ctx.parallelism) - (next - startedFrom) / ctx.parallelism
            if (allowed <= 0) return 'idle'
            n = Math.min(n, allowed)
          }
          for (let i = 0; i < n && next < records.length; i++, next += ctx.parallelism) emit(records[next]!)
          return next >= records.length ? 'end' : 'more'
        },
        offset: () => next,
      }
    },
  }
}

/** An event of the window jobs. */
export interface Event {
  key: string
  value: number
  /** Event time in ms. */
  time: number
}

/**
 * `records` events over `keys` keys, one every `stepMs` of event time, each displaced by up to
 * `disorderMs` either way (deterministically), so they arrive out of order.
 */
export function events(o: { records: number; keys: number; seed?: number; stepMs: number; disorderMs: number }): Event[] {
  return Array.from({ length: o.records }, (_, seq) => {
    const r = generatedRecord({ keys: o.keys, seed: o.seed ?? 1 }, seq)
    const jitter = o.disorderMs === 0 ? 0 : ((r.value * 7919 + seq) % (2 * o.disorderMs + 1)) - o.disorderMs
    return { key: r.key, value: r.value, time: Math.max(0, seq * o.stepMs + jitter) }
  })
}

/** A seeded Fisher-Yates shuffle (a copy). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0 || 1
  const random = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Sums of `value` per key and tumbling window, as `key@start` -> sum. */
export function tumblingSums(evs: readonly Event[], sizeMs: number): Map<string, number> {
  const out = new Map<string, number>()
  for (const e of evs) {
    const start = e.time - (e.time % sizeMs)
    const id = `${e.key}@${start}`
    out.set(id, (out.get(id) ?? 0) + e.value)
  }
  return out
}
