/**
 * The broadcast job the broadcast-state tests run (in-process and as a child process): one rule
 * per key (a factor) broadcast to every instance of a keyed operator, which applies it to the
 * key's records; and the state it must end with, computed straight from the generator's sequence.
 */
import { generatedRecord, generatorSource, job, mapState, valueState, type GeneratorOptions } from '../../index.ts'

export const rules = mapState<string, number>('rules')
export const sum = valueState<number>('sum', { default: 0 })
export const count = valueState<number>('count', { default: 0 })
export const misses = valueState<number>('misses', { default: 0 })

/**
 * Records from this position on must find their key's rule. There is no ordering between the
 * two inputs, so the first records may be processed before the rules; the rules (a few dozen,
 * not rate limited) are in long before the records (rate limited) reach this position.
 */
export const RULES_IN_BY = 3_000

export const factorOf = (keyIndex: number): number => (keyIndex % 7) + 2

export interface BroadcastJobOptions extends GeneratorOptions {
  name: string
  parallelism: number
}

export function broadcastJob(o: BroadcastJobOptions) {
  const { name, parallelism, ...gen } = o
  const j = job(name, { maxParallelism: 64 })
  const ruleStream = j
    .source('rules', generatorSource({ records: gen.keys, keys: 1 }))
    .map((r) => ({ key: `k${r.seq}`, factor: factorOf(r.seq) }))
    .broadcast(rules)
  j.source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .connect(ruleStream)
    .process('apply', { state: { sum, count, misses }, parallelism }, {
      processElement(r, ctx) {
        const c = ctx.state(count)
        c.update(c.value() + 1)
        if (r.seq < RULES_IN_BY) return
        const factor = ctx.broadcastState(rules).get(r.key)
        if (factor === undefined) {
          const m = ctx.state(misses)
          m.update(m.value() + 1)
          return
        }
        const s = ctx.state(sum)
        s.update(s.value() + r.value * factor)
      },
      processBroadcast(rule, ctx) {
        ctx.broadcastState(rules).put(rule.key, rule.factor)
      },
    })
  return j
}

export interface BroadcastExpected {
  sum: Map<string, number>
  count: Map<string, number>
}

export function broadcastExpected(o: Pick<GeneratorOptions, 'records' | 'keys' | 'seed'>): BroadcastExpected {
  const e: BroadcastExpected = { sum: new Map(), count: new Map() }
  for (let seq = 0; seq < o.records; seq++) {
    const r = generatedRecord(o, seq)
    e.count.set(r.key, (e.count.get(r.key) ?? 0) + 1)
    if (seq >= RULES_IN_BY) e.sum.set(r.key, (e.sum.get(r.key) ?? 0) + r.value * factorOf(Number(r.key.slice(1))))
  }
  return e
}
