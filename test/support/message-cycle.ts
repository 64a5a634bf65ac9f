/**
 * The message-cycle job the messaging tests run (in-process and as a child process), and the
 * state it must end with, computed by walking every record's chain of messages.
 *
 * Each source record starts a chain of `length` messages: `ping` sends to `pong`, `pong` sends
 * to `ping` or to itself, hop after hop, each hop to a key derived from the record and the hop.
 * Every record and message adds 1 to `hits` and the record's seq to `seqs` of the key that
 * handles it, so a lost or doubled message shows in the exact per-key totals.
 */
import type { Checks } from './controls.ts'
import type { TestStore } from './stores.ts'
import { generatedRecord, generatorSource, job, readSnapshotState, valueState, type GeneratorOptions, type ProcessContext } from '../../index.ts'

export const hits = valueState<number>('hits', { default: 0 })
export const seqs = valueState<number>('seqs', { default: 0 })

/** A message of a chain: the record it started from, the hop it is, and the chain's length. */
export interface Hop {
  seq: number
  hop: number
  length: number
}

export const chainLength = (seq: number): number => (seq % 9) + 1
const pingKey = (seq: number, hop: number): string => `p${(seq * 3 + hop * 7) % 40}`
const pongKey = (seq: number, hop: number): string => `q${(seq * 7 + hop) % 50}`
/** Where hop `hop + 1` goes after `pong` handled hop `hop`: to itself every third hop, else back to ping. */
const pongSendsToItself = (hop: number): boolean => hop % 3 === 0

function count(ctx: ProcessContext<string, unknown>, seq: number): void {
  const h = ctx.state(hits)
  h.update(h.value() + 1)
  const s = ctx.state(seqs)
  s.update(s.value() + seq)
}

export interface MessageCycleOptions extends GeneratorOptions {
  name: string
  /** Parallelism of ping; pong has one more. */
  parallelism?: number
  /** Called for every message ping or pong handles, e.g. to throw once. */
  before?: (m: Hop) => void
}

export function messageCycleJob(o: MessageCycleOptions) {
  const { name, parallelism = 2, before, ...gen } = o
  const j = job(name, { maxParallelism: 64 })
  j.source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process(
      'ping',
      {
        state: { hits, seqs },
        sendsTo: ['pong'],
        onMessage: (message, ctx) => {
          const m = message as Hop
          before?.(m)
          count(ctx, m.seq)
          if (m.hop < m.length) ctx.send('pong', pongKey(m.seq, m.hop + 1), { ...m, hop: m.hop + 1 })
        },
        parallelism,
      },
      (r, ctx) => {
        count(ctx, r.seq)
        ctx.send('pong', pongKey(r.seq, 1), { seq: r.seq, hop: 1, length: chainLength(r.seq) })
      },
    )
  j.actor<Hop, string>('pong', {
    state: { hits, seqs },
    sendsTo: ['ping', 'pong'],
    parallelism: parallelism + 1,
    onMessage: (m, ctx) => {
      before?.(m)
      count(ctx, m.seq)
      if (m.hop >= m.length) return
      const next = { ...m, hop: m.hop + 1 }
      if (pongSendsToItself(m.hop)) ctx.send('pong', pongKey(m.seq, next.hop), next)
      else ctx.send('ping', pingKey(m.seq, next.hop), next)
    },
  })
  return j
}

export interface CycleState {
  hits: Map<string, number>
  seqs: Map<string, number>
}

/** The state of `ping` and `pong` after every record's chain ran once. */
export function expectedCycleState(o: Pick<GeneratorOptions, 'records' | 'keys' | 'seed'>): { ping: CycleState; pong: CycleState } {
  const e = { ping: { hits: new Map(), seqs: new Map() }, pong: { hits: new Map(), seqs: new Map() } } as { ping: CycleState; pong: CycleState }
  const add = (s: CycleState, key: string, seq: number) => {
    s.hits.set(key, (s.hits.get(key) ?? 0) + 1)
    s.seqs.set(key, (s.seqs.get(key) ?? 0) + seq)
  }
  for (let seq = 0; seq < o.records; seq++) {
    add(e.ping, generatedRecord(o, seq).key, seq)
    const length = chainLength(seq)
    let at: 'ping' | 'pong' = 'pong'
    let key = pongKey(seq, 1)
    for (let hop = 1; hop <= length; hop++) {
      add(e[at], key, seq)
      if (at === 'ping') {
        at = 'pong'
        key = pongKey(seq, hop + 1)
      } else if (pongSendsToItself(hop)) key = pongKey(seq, hop + 1)
      else {
        at = 'ping'
        key = pingKey(seq, hop + 1)
      }
    }
  }
  return e
}

/** Asserts that the job's last completed snapshot holds exactly the expected state of ping and pong. */
export async function assertCycleState(t: Checks, ts: Pick<TestStore, 'store'>, job: string, expected: { ping: CycleState; pong: CycleState }): Promise<void> {
  for (const op of ['ping', 'pong'] as const) {
    for (const name of ['hits', 'seqs'] as const) {
      const got = await readSnapshotState(ts.store, job, op, name)
      const want = expected[op][name]
      t.equal(got.size, want.size, `${op}.${name}: one entry per key`)
      const wrong = [...want].filter(([k, v]) => got.get(k) !== v).map(([k, v]) => `${k}: ${String(got.get(k))} != ${v}`)
      t.equal(wrong.length, 0, `${op}.${name}: every key holds exactly the expected value`, { wrong: wrong.slice(0, 5) })
    }
  }
}
