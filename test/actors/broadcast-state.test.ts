/**
 * Broadcast state: every instance of a keyed operator gets every broadcast record and keeps the
 * same map state; the keyed side only reads it; it is snapshotted per instance and restored,
 * after a SIGKILL and with another parallelism, with exact results.
 */
import t from 'tap'
import {
  arraySink,
  boundedOutOfOrderness,
  generatorSource,
  job,
  JobDefinitionError,
  mapState,
  readSnapshotState,
  runJob,
  startJob,
  valueState,
  type MapState,
  type ReadOnlyBroadcastState,
  type RunOptions,
  type SnapshotStore,
  type Source,
} from '../../index.ts'
import { decodeOperatorChunk } from '../../actors/state/operator-state.ts'
import { BroadcastStates } from '../../actors/state/broadcast-state.ts'
import { failure } from '../support/expect.ts'
import { RESTORE_OFF, faultTest, type Checks } from '../support/controls.ts'
import { killPartWayThenFinish } from '../support/kill-runs.ts'
import { embeddedTestStore } from '../support/stores.ts'
import { broadcastExpected, broadcastJob, count, sum } from '../support/broadcast.ts'

const quiet = (store: SnapshotStore, extra: Partial<RunOptions> = {}): RunOptions => ({ store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra })

/** A source of fixed items that emits nothing until `open()` is true. */
function gatedSource<T>(items: readonly T[], open: () => boolean): Source<T> {
  return {
    kind: 'gated',
    open: () => {
      let i = 0
      return {
        poll(emit, max) {
          if (!open()) return 'idle'
          for (let n = 0; n < max && i < items.length; n++) emit(items[i++]!)
          return i >= items.length ? 'end' : 'more'
        },
        offset: () => i,
        restore(o) {
          i = o as number
        },
      }
    },
  }
}

/** Every instance's broadcast state `name` in the latest completed snapshot, as sorted entries. */
async function broadcastStates(store: SnapshotStore, jobName: string, op: string, name: string): Promise<[unknown, unknown][][]> {
  const id = (await store.latestCompleted(jobName))!.id
  const out: [unknown, unknown][][] = []
  for (const c of await store.readChunks(jobName, id, { operatorUid: op, kind: 'operator' })) {
    const e = decodeOperatorChunk(c.format, c.data).broadcast?.find((b) => b.name === name)?.entries ?? []
    const pairs: [unknown, unknown][] = []
    for (let i = 0; i < e.length; i += 2) pairs.push([e[i], e[i + 1]])
    out[c.index] = pairs.sort((a, b) => String(a[0]).localeCompare(String(b[0])))
  }
  return out
}

interface Rule {
  id: string
  limit: number
}

t.test('broadcast - every instance sees every broadcast record and keeps the same state', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const ruleState = mapState<string, Rule>('rule-state')
  const seenRules: { instance: number; id: string }[] = []
  const out: string[] = []
  const j = job('bc-all')
  const ruleList: Rule[] = Array.from({ length: 10 }, (_, i) => ({ id: `r${i}`, limit: i * 10 }))
  const ruleStream = j.source('rules', gatedSource(ruleList, () => true), { parallelism: 1 }).broadcast(ruleState)
  j.source('in', generatorSource({ records: 3_000, keys: 20 }), { parallelism: 2 })
    .keyBy((r) => r.key)
    .connect(ruleStream)
    .process<string>('match', { parallelism: 3 }, {
      processElement(r, ctx) {
        const rule = ctx.broadcastState(ruleState).get(`r${r.value % 10}`)
        if (rule !== undefined && r.value > rule.limit) ctx.emit(`${ctx.key}:${rule.id}`)
      },
      processBroadcast(rule, ctx) {
        seenRules.push({ instance: ctx.instance, id: rule.id })
        ctx.broadcastState(ruleState).put(rule.id, rule)
      },
    })
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(ts.store, { checkpoints: { intervalMs: 50 }, strictState: true }))
  t.equal(result.status, 'finished')
  for (let i = 0; i < 3; i++) {
    t.same(seenRules.filter((s) => s.instance === i).map((s) => s.id), ruleList.map((r) => r.id), `instance ${i} got every rule, in order`)
  }
  const states = await broadcastStates(ts.store, 'bc-all', 'match', 'rule-state')
  t.equal(states.length, 3, 'each instance snapshotted its copy')
  t.same(states[1], states[0])
  t.same(states[2], states[0])
  t.same(states[0]!.map(([k]) => k), ruleList.map((r) => r.id).sort(), 'the copy holds every rule')
})

t.test('broadcast - the keyed side cannot write broadcast state, nor read one it was not connected to', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const bc = mapState<string, number>('bc')
  const other = mapState<string, number>('other')
  const run = (processElement: (r: { key: string }, ctx: { broadcastState: (d: typeof bc) => unknown }) => void) => {
    const j = job('bc-write')
    const b = j.source('rules', generatorSource({ records: 3, keys: 1 })).broadcast(bc)
    j.source('in', generatorSource({ records: 100, keys: 3 }))
      .keyBy((r) => r.key)
      .connect(b)
      .process('p', {}, { processElement, processBroadcast: (r, ctx) => ctx.broadcastState(bc).put(`x${r.seq}`, r.seq) })
    return runJob(j, quiet(ts.store))
  }
  for (const [what, write] of [
    ['put', (s: MapState<string, number>) => s.put('k', 1)],
    ['putAll', (s: MapState<string, number>) => s.putAll([['k', 1]])],
    ['remove', (s: MapState<string, number>) => s.remove('k')],
    ['clear', (s: MapState<string, number>) => s.clear()],
  ] as const) {
    const err = await failure(run((_r, ctx) => write(ctx.broadcastState(bc) as MapState<string, number>)))
    t.type(err, JobDefinitionError, `${what} fails the job with a definition error`)
    t.match(err.message, /broadcast state bc is read-only in processElement: change it in processBroadcast/)
  }
  const unknown = await failure(run((_r, ctx) => ctx.broadcastState(other)))
  t.match(unknown.message, /broadcastState\("other"\): it is not a state of the broadcast stream connected here/)
  // The read-only type has no writes at all:
  const typed = (s: ReadOnlyBroadcastState<string, number>) => {
    // @ts-expect-error put is not part of ReadOnlyBroadcastState
    s.put('k', 1)
  }
  t.type(typed, 'function')
})

t.test('broadcast - definition mistakes fail at once', async (t) => {
  const j = job('bc-def')
  const s = j.source('in', generatorSource({ records: 1, keys: 1 }))
  t.throws(() => s.broadcast(), /at least one map state/)
  t.throws(() => s.broadcast(valueState('v') as never), /broadcast state must be map state \(mapState\(\.\.\.\)\), got value state/)
  t.throws(() => s.broadcast(mapState('a'), mapState('a')), /two broadcast states are named a/)
  t.throws(() => s.broadcast(mapState('t', { ttl: { ttlMs: 1000 } })), /broadcast state t cannot have a ttl/)
  const b = s.broadcast(mapState('rules'))
  const keyed = s.keyBy((r) => r.key)
  t.throws(() => keyed.connect(b).process('p', {}, { processElement: () => {} } as never), /processBroadcast must be a function/)
  t.throws(() => keyed.connect(b).process('p', {}, { processElement: async () => {}, processBroadcast: () => {} } as never), /async function/)
  t.throws(() => keyed.connect(b).process('p', { state: { r: mapState('rules') } }, { processElement: () => {}, processBroadcast: () => {} }), /declared both as keyed state and as broadcast state/)
  t.throws(() => keyed.connect(b).process('p', { onMessage: () => {} } as never, { processElement: () => {}, processBroadcast: () => {} }), /onMessage is not supported yet on a process connected to a broadcast stream/)
  t.throws(() => keyed.connect(job('other').source('x', generatorSource({ records: 1, keys: 1 })).broadcast(mapState('z'))), /different jobs/)
})

t.test('ordering - keyed records before any broadcast record see empty state; after, they see it (no order between the inputs)', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const bc = mapState<string, number>('limits')
  for (const order of ['keyed first', 'broadcast first'] as const) {
    let keyedDone = 0
    let broadcastDone = 0
    const records = 500
    const parallelism = 2
    const seen: (number | undefined)[] = []
    const j = job(`bc-order-${order === 'keyed first' ? 'k' : 'b'}`)
    const b = j.source('rules', gatedSource([{ limit: 7 }], () => order === 'broadcast first' || keyedDone === records)).broadcast(bc)
    j.source('in', gatedSource(Array.from({ length: records }, (_, i) => ({ key: `k${i % 13}` })), () => order === 'keyed first' || broadcastDone === parallelism))
      .keyBy((r) => r.key)
      .connect(b)
      .process('p', { parallelism }, {
        processElement(_r, ctx) {
          seen.push(ctx.broadcastState(bc).get('limit'))
          keyedDone++
        },
        processBroadcast(r, ctx) {
          ctx.broadcastState(bc).put('limit', r.limit)
          broadcastDone++
        },
      })
    const result = await runJob(j, quiet(ts.store))
    t.equal(result.status, 'finished', `${order}: the job finishes`)
    t.equal(seen.length, records)
    const expected = order === 'keyed first' ? undefined : 7
    t.ok(seen.every((v) => v === expected), `${order}: every keyed record saw ${String(expected)}`)
    t.equal(broadcastDone, parallelism, `${order}: every instance got the broadcast record`)
  }
})

t.test('restore - a snapshot taken before the broadcast state existed restores with it empty', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const name = 'bc-late'
  const gen = { records: 20_000, keys: 50, seed: 9, ratePerSecond: 20_000 }
  const plain = job(name, { maxParallelism: 64 })
  plain
    .source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process('apply', { state: { sum, count }, parallelism: 2 }, (_r, ctx) => ctx.state(count).update(ctx.state(count).value() + 1))
  const first = startJob(plain, quiet(ts.store, { checkpoints: { intervalMs: 20 } }))
  const until = Date.now() + 30_000
  while ((await ts.store.latestCompleted(name)) === undefined && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
  await new Promise((r) => setTimeout(r, 200))
  await first.cancel()
  t.equal((await first.done).status, 'canceled')
  const result = await runJob(broadcastJob({ name, parallelism: 2, ...gen }), quiet(ts.store, { checkpoints: { intervalMs: 20 }, restore: 'latest' }))
  t.equal(result.status, 'finished', 'the job with the new broadcast input restored and finished')
  const got = await readSnapshotState(ts.store, name, 'apply', 'count')
  const want = broadcastExpected(gen).count
  t.same([...got].sort(), [...want].sort(), 'keyed state restored: every record counted once')
  const states = await broadcastStates(ts.store, name, 'apply', 'rules')
  t.equal(states[0]!.length, gen.keys, 'the broadcast state filled from the new input')
})

async function assertBroadcastResult(t: Checks, store: SnapshotStore, jobName: string, gen: { records: number; keys: number; seed: number }): Promise<void> {
  const want = broadcastExpected(gen)
  const gotCount = await readSnapshotState(store, jobName, 'apply', 'count')
  const gotSum = await readSnapshotState(store, jobName, 'apply', 'sum')
  const gotMisses = await readSnapshotState(store, jobName, 'apply', 'misses')
  const sorted = (m: Map<unknown, unknown>) => JSON.stringify([...m].sort())
  t.equal(sorted(gotCount), sorted(want.count), 'count: every record exactly once')
  t.equal(sorted(gotSum), sorted(want.sum), 'sum: every record after the rules applied its key\'s rule exactly once')
  t.equal(gotMisses.size, 0, 'no record after the rules found its rule missing')
}

faultTest(
  t,
  'SIGKILL - broadcast state restored at the same parallelism, then with 2 -> 3 instances, exact results',
  async (t, mutation) => {
    const ts = embeddedTestStore()
    t.teardown(() => ts.cleanup())
    await ts.store.open()
    const jobName = 'bc-kill'
    const gen = { records: 80_000, keys: 50, seed: 6 }
    const env = { WEIR_FIXTURE_JOB: jobName, WEIR_FIXTURE_RECORDS: String(gen.records), WEIR_FIXTURE_KEYS: String(gen.keys), WEIR_FIXTURE_SEED: String(gen.seed), WEIR_FIXTURE_RATE: '25000' }
    const last = await killPartWayThenFinish(t, { jobFile: 'test/fixtures/broadcast-job.ts', store: ts, job: jobName, env, records: gen.records, killed: ['2', '2'], last: '3' }, mutation)
    t.match(last.output(), /instance=apply\[2\]/, 'with three instances of the keyed operator')
    await assertBroadcastResult(t, ts.store, jobName, gen)
    const states = await broadcastStates(ts.store, jobName, 'apply', 'rules')
    t.equal(states.length, 3)
    for (let i = 0; i < 3; i++) t.equal(states[i]!.length, gen.keys, `instance ${i} holds every rule`)
  },
  [{ mutation: RESTORE_OFF, because: /run 2 \(parallelism 2\) restored snapshot \d+/ }],
)

t.test('broadcast - processBroadcast that throws a non-Error or returns a promise fails the job clearly', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const bc = mapState<string, number>('bc')
  const run = (processBroadcast: () => unknown) => {
    const j = job('bc-bad')
    const b = j.source('rules', generatorSource({ records: 3, keys: 1 })).broadcast(bc)
    j.source('in', generatorSource({ records: 10, keys: 3 }))
      .keyBy((r) => r.key)
      .connect(b)
      .process('p', { parallelism: 2 }, { processElement: () => {}, processBroadcast: processBroadcast as () => void })
    return runJob(j, quiet(ts.store))
  }
  const thrown = await failure(run(() => {
    throw { code: 42 }
  }))
  t.match(thrown.message, /operator p\[\d\]/)
  t.match(thrown.message, /code/)
  t.match((await failure(run(() => Promise.resolve()))).message, /promise/i)
})

t.test('broadcast states - snapshot and restore: every new instance takes one old copy, at any parallelism, serde applied', async (t) => {
  const json = { encode: (v: unknown) => new TextEncoder().encode(JSON.stringify(v)), decode: (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as { n: number } }
  const plain = mapState<string, number>('plain')
  const coded = mapState<string, { n: number }>('coded', { serde: json })
  const spec = { states: [plain, coded] as never[], fn: (r: unknown, ctx: { broadcastState: (d: unknown) => MapState<string, unknown> }) => ctx.broadcastState(r === 'p' ? plain : coded).put(String(r), r === 'p' ? 1 : { n: 2 }) }
  const make = (i: number) => new BroadcastStates(spec as never, 'op', i, () => {})
  const a = make(0)
  a.process(['p', 'c'], undefined, () => {})
  const chunk = { broadcast: a.snapshot() }
  t.ok(chunk.broadcast[1]!.entries[1] instanceof Uint8Array, 'a state with a serde is written with it')
  for (const [oldP, newP] of [[1, 3], [3, 2], [2, 2]] as const) {
    const old = Array.from({ length: oldP }, () => chunk)
    for (let i = 0; i < newP; i++) {
      const b = make(i)
      b.restore(old, i)
      t.same([...b.readOnly(plain).entries()], [['p', 1]], `${oldP} -> ${newP}, instance ${i}: plain state`)
      t.same(b.readOnly(coded).get('c'), { n: 2 }, `${oldP} -> ${newP}, instance ${i}: state with a serde`)
    }
  }
  const empty = make(0)
  empty.restore([], 0)
  empty.restore([undefined, {}], 1)
  t.equal(empty.readOnly(plain).size(), 0, 'no broadcast state in the snapshot: empty, no error')
  t.throws(() => make(0).restore([{ broadcast: [{ name: 'gone', entries: [] }] }], 0), /holds broadcast state "gone"/)
})

t.test('broadcast - a keyed process with a broadcast input keeps its timers; onTimer reads broadcast state', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const factor = mapState<string, number>('factor')
  const fired: { key: string; time: number; factor: number | undefined }[] = []
  const j = job('bc-timers')
  const b = j.source('rules', generatorSource({ records: 1, keys: 1 })).map(() => 3).broadcast(factor)
  j.source('in', generatorSource({ records: 300, keys: 3 }), { watermarks: boundedOutOfOrderness({ timestamp: (r) => r.seq, maxOutOfOrdernessMs: 0 }) })
    .keyBy((r) => r.key)
    .connect(b)
    .process('p', {
      parallelism: 2,
      onTimer(time, ctx) {
        fired.push({ key: ctx.key, time, factor: ctx.broadcastState(factor).get('f') })
      },
    }, {
      processElement(r, ctx) {
        if (r.seq % 100 === 99) ctx.timers.registerEventTimeTimer(r.seq)
      },
      processBroadcast(f, ctx) {
        ctx.broadcastState(factor).put('f', f)
      },
    })
  const result = await runJob(j, quiet(ts.store, { checkpoints: { intervalMs: 50 } }))
  t.equal(result.status, 'finished')
  t.same(fired.map((f) => f.time).sort((x, y) => x - y), [99, 199, 299], 'every event-time timer fired (at the latest at the end of input)')
  t.ok(fired.every((f) => f.factor === 3), 'onTimer read the broadcast state')
})
