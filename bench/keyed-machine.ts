/**
 * Keyed machines in local mode: generatorSource -> keyBy(key) -> a keyed XState machine (a
 * login-pattern machine: `fail` counts, `success` after three or more fails emits) -> a sink that
 * counts what the machine emits, checkpoints off, against a plain loop in the same process that
 * keeps one XState snapshot per key in a Map and calls XState's `transition` on the same events.
 * Interleaved, median of `WEIR_BENCH_REPEAT` (default 3) runs each.
 *
 *   node --import tsx bench/keyed-machine.ts
 *   WEIR_BENCH_CASES=1000:1000000 node --import tsx bench/keyed-machine.ts
 *
 * Prints a Markdown table for BENCHMARKS.md. Not a test: nothing asserts, except that both sides
 * emit the same number of events.
 */
import { assign, emit, initialTransition, setup, transition, type AnyMachineSnapshot } from 'xstate'
import { createLogger, generatedRecord, generatorSource, job, runJob, type Sink } from '../index.ts'

const logins = setup({ types: { context: {} as { fails: number }, events: {} as { type: 'fail' } | { type: 'success' } } }).createMachine({
  initial: 'quiet',
  context: { fails: 0 },
  states: {
    quiet: { on: { fail: { target: 'failing', actions: assign({ fails: 1 }) } } },
    failing: {
      on: {
        fail: { actions: assign({ fails: ({ context }) => context.fails + 1 }) },
        success: [
          { guard: ({ context }) => context.fails >= 3, target: 'quiet', actions: [emit({ type: 'suspicious' }), assign({ fails: 0 })] },
          { target: 'quiet', actions: assign({ fails: 0 }) },
        ],
      },
    },
  },
})

/** One event in five is a success. */
const eventOf = (value: number) => ({ type: value % 5 === 0 ? 'success' : 'fail' }) as const

function plainLoop(records: number, keys: number): { perSecond: number; emitted: number } {
  const snapshots = new Map<string, AnyMachineSnapshot>()
  let emitted = 0
  const began = performance.now()
  for (let seq = 0; seq < records; seq++) {
    const r = generatedRecord({ keys }, seq)
    let s = snapshots.get(r.key)
    if (s === undefined) s = initialTransition(logins)[0]
    const [next, actions] = transition(logins, s, eventOf(r.value))
    for (const a of actions) if ((a.type as string) === 'xstate.emit') emitted++
    snapshots.set(r.key, next)
  }
  return { perSecond: records / ((performance.now() - began) / 1000), emitted }
}

async function weir(records: number, keys: number): Promise<{ perSecond: number; emitted: number }> {
  let emitted = 0
  const counting: Sink<unknown> = { kind: 'count', open: () => ({ write: (rs) => void (emitted += rs.length) }) }
  const j = job('bench-machines')
    .source('in', generatorSource({ records, keys }))
    .keyBy((r) => r.key)
    .machine('patterns', logins, { event: (r) => eventOf(r.value) })
    .sink('out', counting)
  const began = performance.now()
  await runJob(j, { logger: createLogger({ level: 'silent' }), progressIntervalMs: 0, watchdogMs: 0, strictState: false })
  return { perSecond: records / ((performance.now() - began) / 1000), emitted }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cases = (process.env.WEIR_BENCH_CASES ?? '1000:1000000,100000:1000000').split(',').map((c) => c.split(':').map(Number) as [number, number])
const repeat = Number(process.env.WEIR_BENCH_REPEAT ?? 3)

console.log('| keys | events | plain loop (transition) events/s | weir keyed machine events/s | ratio | emitted |')
console.log('|---|---|---|---|---|---|')
for (const [keys, records] of cases) {
  const plain: number[] = []
  const ours: number[] = []
  let emitted = [0, 0]
  for (let i = 0; i < repeat; i++) {
    const p = plainLoop(records, keys)
    const w = await weir(records, keys)
    plain.push(p.perSecond)
    ours.push(w.perSecond)
    emitted = [p.emitted, w.emitted]
  }
  if (emitted[0] !== emitted[1]) throw new Error(`the two sides emitted ${emitted[0]} and ${emitted[1]} events`)
  const p = median(plain)
  const w = median(ours)
  console.log(`| ${keys} | ${records} | ${Math.round(p).toLocaleString('en')} | ${Math.round(w).toLocaleString('en')} | ${(w / p).toFixed(2)} | ${emitted[1]} |`)
}
