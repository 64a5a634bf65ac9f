/**
 * Timers at scale: one keyed instance's TimerStore with 1M registered timers (100k keys, ten
 * timers each, event time, over 128 key groups). Measures registration, the synchronous part of a
 * snapshot (the stall a checkpoint adds to the record path), the worst copy-on-write copy of a
 * key group after it, the encoding done off the hot path, firing them all, and a restore.
 *
 *   node --import tsx bench/timers.ts [timers]
 */
import { keyGroupOf } from '../actors/state/key-groups.ts'
import { TimerStore } from '../actors/time/timers.ts'

const total = Number(process.argv[2] ?? 1_000_000)
const perKey = 10
const keys = Math.max(1, Math.floor(total / perKey))
const maxParallelism = 128
const range = { start: 0, end: maxParallelism - 1 }

function ms(from: number): number {
  return performance.now() - from
}

const names = Array.from({ length: keys }, (_, i) => `key-${i}`)
const groups = names.map((k) => keyGroupOf(k, maxParallelism))
const store = new TimerStore(range)
let t0 = performance.now()
for (let j = 0; j < perKey; j++) for (let i = 0; i < keys; i++) store.register('event-time', names[i]!, groups[i]!, 1_000 * j + (i % 1000))
const registerMs = ms(t0)

// The stall: what Instance.snapshot does synchronously for timers.
t0 = performance.now()
const snap = store.startSnapshot()
const syncMs = ms(t0)

// Writes right after the snapshot copy each touched key group once (copy-on-write).
const copies: number[] = []
const touched = new Set<number>()
for (let i = 0; i < keys && touched.size < maxParallelism; i++) {
  if (touched.has(groups[i]!)) continue
  touched.add(groups[i]!)
  const t1 = performance.now()
  store.register('event-time', names[i]!, groups[i]!, 1e9)
  copies.push(ms(t1))
}
copies.sort((a, b) => a - b)

let slices = 0
let worstSliceMs = 0
t0 = performance.now()
for (;;) {
  const t1 = performance.now()
  const done = store.encodeSome(2)
  worstSliceMs = Math.max(worstSliceMs, ms(t1))
  slices++
  if (done) break
}
const encodeMs = ms(t0)
const bytes = snap.groups.reduce((n, g) => n + g.data.byteLength, 0)

t0 = performance.now()
const restored = new TimerStore(range)
for (const g of snap.groups) restored.restoreGroup(g.keyGroup, g.data, maxParallelism)
const restoreMs = ms(t0)

t0 = performance.now()
let fired = 0
while (restored.pollDue('event-time', Infinity) !== undefined) fired++
const fireMs = ms(t0)

const mem = process.memoryUsage().heapUsed / 2 ** 20
const row = (k: string, v: string) => console.log(`| ${k} | ${v} |`)
console.log(`node ${process.version}; ${total.toLocaleString('en')} event-time timers, ${keys.toLocaleString('en')} keys, ${maxParallelism} key groups`)
console.log('| measure | value |\n|---|---|')
row('register all', `${registerMs.toFixed(0)} ms (${((registerMs * 1e6) / total).toFixed(0)} ns/timer)`)
row('snapshot, synchronous part (the stall)', `${syncMs.toFixed(2)} ms`)
row('copy-on-write copy of a key group after it (first write)', `median ${copies[copies.length >> 1]!.toFixed(2)} ms, worst ${copies.at(-1)!.toFixed(2)} ms (a GC pause lands in one)`)
row('encoding, off the record path', `${encodeMs.toFixed(0)} ms in ${slices} slices, worst slice ${worstSliceMs.toFixed(1)} ms, ${(bytes / 2 ** 20).toFixed(1)} MiB`)
row('restore (decode + register)', `${restoreMs.toFixed(0)} ms`)
row('fire all in time order', `${fireMs.toFixed(0)} ms, ${fired.toLocaleString('en')} timers`)
row('heap used', `${mem.toFixed(0)} MiB`)
if (fired !== total) throw new Error(`fired ${fired} of ${total}`)
