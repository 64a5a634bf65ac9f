/**
 * Messages between actors (docs/architecture.md section 15): `ctx.send` to keyed operators by key,
 * cycles included, with exact state through checkpoints, failures and rescaling.
 */
import t from 'tap'
import {
  arraySink,
  generatedRecord,
  generatorSource,
  IncompatibleSnapshotError,
  job,
  keyGroupOf,
  JobDefinitionError,
  JobFailedError,
  readSnapshotState,
  runJob,
  UserCodeError,
  UnserializableMessageError,
  valueState,
  type ProcessContext,
  type RunOptions,
  type SnapshotStore,
} from '../../index.ts'
import { sendEdges, messageCycles } from '../../actors/runtime/messages.ts'
import { decodeChannelChunk, MessageRecorder, type Recording } from '../../actors/runtime/message-recording.ts'
import type { RecordBatch } from '../../actors/runtime/channel.ts'
import { tempEmbeddedStore } from '../support/stores.ts'
import { failure } from '../support/expect.ts'
import { assertCycleState, expectedCycleState, messageCycleJob } from '../support/message-cycle.ts'

function quiet(store: SnapshotStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

const count = valueState<number>('count', { default: 0 })

t.test('graph - send edges on a cycle are recorded, the others aligned', async (t) => {
  const j = job('edges')
  j.source('in', generatorSource({ records: 1, keys: 1 }))
    .keyBy((r) => r.key)
    .process('a', { sendsTo: ['b', 'c'] }, () => {})
  j.actor('b', { sendsTo: ['a'], onMessage: () => {} })
  j.actor('c', { sendsTo: ['c'], onMessage: () => {} })
  j.actor('d', { onMessage: () => {} })
  j.actor('e', { sendsTo: ['d'], onMessage: () => {} })
  // e is reached by nobody, so the graph check refuses it; the analysis is pure and still answers.
  const g = { operators: (j as unknown as { operators: never[] }).operators, edges: (j as unknown as { edges: never[] }).edges }
  t.same(
    sendEdges(g).map((e) => `${e.from}->${e.to}:${e.recorded ? 'recorded' : 'aligned'}`),
    ['a->b:recorded', 'a->c:aligned', 'b->a:recorded', 'c->c:recorded', 'e->d:aligned'],
  )
  t.same(messageCycles(g).map((c) => c.sort()), [['a', 'b'], ['c']])
})

t.test('recorder - records what arrives between the snapshot and the barrier, sets aside what comes after an early barrier', async (t) => {
  const batch = (...keys: string[]): RecordBatch => ({ type: 'records', records: keys.map((k) => ({ k })), keys, groups: keys.map((_, i) => i) })
  const decoded = (r: Recording) => decodeChannelChunk(r.encode(), { start: 0, end: 127 }).flatMap((b) => b.keys)
  const rec = new MessageRecorder(2, 'op')
  rec.onRecords(0, batch('before'))
  const one = rec.onSnapshot(1)
  t.notOk(one.complete, 'both channels record until their barrier 1')
  rec.onRecords(0, batch('a1'))
  rec.onRecords(1, batch('b1'))
  rec.onBarrier(0, 1)
  rec.onRecords(0, batch('a-after'))
  t.notOk(one.complete)
  rec.onRecords(1, batch('b2'))
  rec.onBarrier(1, 1)
  t.ok(one.complete, 'complete once barrier 1 arrived on every channel')
  t.same(decoded(one), ['a1', 'b1', 'b2'], 'exactly the batches between the snapshot and each channel\'s barrier')
  // Barrier 2 arrives on channel 0 before this instance takes snapshot 2: channel 0 waits.
  rec.onBarrier(0, 2)
  t.ok(rec.isHeld(0), 'set aside after an early barrier')
  t.notOk(rec.isHeld(1))
  const two = rec.onSnapshot(2)
  t.notOk(rec.isHeld(0), 'released by the snapshot')
  rec.onRecords(0, batch('a-released'))
  rec.onRecords(1, batch('b3'))
  rec.onEnd(1)
  t.ok(two.complete, 'an ended channel counts as its barrier')
  t.same(decoded(two), ['b3'], 'the released channel is not recorded: its barrier came first')
  t.same(new MessageRecorder(1).onSnapshot(1).encode().byteLength, 0, 'nothing in flight: an empty chunk')
})

t.test('recorder - several checkpoints record at once; restored messages pending at a snapshot are recorded', async (t) => {
  const batch = (...keys: string[]): RecordBatch => ({ type: 'records', records: keys, keys, groups: keys.map((k) => Number(k.slice(1))) })
  const decoded = (r: Recording, end = 127) => decodeChannelChunk(r.encode(), { start: 0, end }).flatMap((b) => b.keys)
  const rec = new MessageRecorder(1)
  const one = rec.onSnapshot(1)
  rec.onRecords(0, batch('k1'))
  const two = rec.onSnapshot(2)
  rec.onRecords(0, batch('k2', 'k90'))
  rec.onBarrier(0, 1)
  rec.onRecords(0, batch('k3'))
  rec.onBarrier(0, 2)
  t.same(decoded(one), ['k1', 'k2', 'k90'])
  t.same(decoded(two), ['k2', 'k90', 'k3'])
  t.same(decoded(two, 63), ['k2', 'k3'], 'a restore keeps the messages of its own key groups only')
  const three = rec.onSnapshot(3)
  rec.recordPending(three, [batch('k7')])
  rec.onBarrier(0, 3)
  t.same(decoded(three), ['k7'])
  class Opaque {}
  const four = rec.onSnapshot(4)
  t.throws(() => rec.onRecords(0, { type: 'records', records: [new Opaque()], keys: ['x'], groups: [1] }), UnserializableMessageError)
  t.notOk(four.complete)
})

t.test('ping-pong - chains of messages between two keyed operators end with exact state', async (t) => {
  const store = tempEmbeddedStore(t)
  const gen = { records: 3_000, keys: 30, seed: 4 }
  const result = await runJob(messageCycleJob({ name: 'ping-pong', ...gen }), quiet(store, { checkpoints: { intervalMs: 20 } }))
  t.equal(result.status, 'finished')
  t.ok(result.checkpointsCompleted >= 1)
  await assertCycleState(t, { store }, 'ping-pong', expectedCycleState(gen))
})

t.test('ping-pong - batches of one message, channels of one batch, a checkpoint every 5 ms', async (t) => {
  const store = tempEmbeddedStore(t)
  const gen = { records: 500, keys: 7, seed: 2 }
  const result = await runJob(messageCycleJob({ name: 'ping-pong-small', ...gen, parallelism: 1 }), quiet(store, { checkpoints: { intervalMs: 5 }, tuning: { batchSize: 1, channelCapacity: 1 } }))
  t.equal(result.status, 'finished')
  await assertCycleState(t, { store }, 'ping-pong-small', expectedCycleState(gen))
})

t.test('self-send - a countdown per key that an operator sends to itself', async (t) => {
  const store = tempEmbeddedStore(t)
  const out: string[] = []
  const j = job('countdown')
  j.source('in', generatorSource({ records: 200, keys: 5, seed: 1 }))
    .keyBy((r) => r.key)
    .process(
      'down',
      {
        state: { count },
        sendsTo: ['down'],
        onMessage: (left, ctx) => {
          const c = ctx.state(count)
          c.update(c.value() + 1)
          if ((left as number) > 0) ctx.send('down', ctx.key, (left as number) - 1)
          else ctx.emit(`${ctx.key} done`)
        },
        parallelism: 2,
      },
      (r, ctx) => ctx.send('down', ctx.key, r.seq % 4),
    )
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 } }))
  t.equal(result.status, 'finished')
  const want = new Map<string, number>()
  for (let seq = 0; seq < 200; seq++) {
    const key = generatedRecord({ keys: 5, seed: 1 }, seq).key
    want.set(key, (want.get(key) ?? 0) + (seq % 4) + 1)
  }
  const got = await readSnapshotState(store, 'countdown', 'down', 'count')
  t.same([...got].sort(), [...want].sort(), 'every key counted every message of every countdown once')
  t.equal(out.length, 200, 'one emit per countdown, from onMessage')
  // Without checkpoints the cycle ends the same way.
  out.length = 0
  t.equal((await runJob(j, quiet(store, { checkpoints: false }))).status, 'finished')
  t.equal(out.length, 200, 'without checkpoints too')
})

t.test('actor - an operator reached only by messages keeps state and emits', async (t) => {
  const store = tempEmbeddedStore(t)
  const stock = valueState<number>('stock', { default: 1000 })
  const out: { sku: string; left: number }[] = []
  const j = job('shop')
  j.source('orders', generatorSource({ records: 1_000, keys: 50, seed: 9 }))
    .keyBy((o) => o.key)
    .process('order', { sendsTo: ['inventory'] }, (o, ctx) => ctx.send('inventory', `sku${o.value % 7}`, 1))
  j.actor<number, string, { sku: string; left: number }>('inventory', {
    state: { stock },
    parallelism: 3,
    onMessage: (quantity, ctx) => {
      const s = ctx.state(stock)
      s.update(s.value() - quantity)
      ctx.emit({ sku: ctx.key, left: s.value() })
    },
  }).sink('out', arraySink(out))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 } }))
  t.equal(result.status, 'finished')
  const gen = { records: 1_000, keys: 50, seed: 9 }
  const ordered = new Map<string, number>()
  for (let seq = 0; seq < gen.records; seq++) {
    const sku = `sku${generatedRecord(gen, seq).value % 7}`
    ordered.set(sku, (ordered.get(sku) ?? 0) + 1)
  }
  const got = await readSnapshotState(store, 'shop', 'inventory', 'stock')
  t.same([...got].sort(), [...ordered].map(([k, n]) => [k, 1000 - n]).sort())
  t.equal(out.length, gen.records, 'one emitted record per message')
  for (const [sku, n] of ordered) t.equal(Math.min(...out.filter((o) => o.sku === sku).map((o) => o.left)), 1000 - n)
})

t.test('failure and restore - in-flight messages are neither lost nor applied twice, also at another parallelism', async (t) => {
  const store = tempEmbeddedStore(t)
  const gen = { records: 60_000, keys: 40, seed: 6 }
  let handled = 0
  const failing = messageCycleJob({
    name: 'cycle-restore',
    ...gen,
    parallelism: 2,
    before: () => {
      if (++handled === 200_000) throw new Error('injected failure')
    },
  })
  const err = await failure(runJob(failing, quiet(store, { checkpoints: { intervalMs: 30, retained: 100 } })))
  t.type(err, JobFailedError, 'the first run fails part-way')
  t.type(err.cause, UserCodeError)
  const snapshots = (await store.listSnapshots('cycle-restore')).filter((s) => s.status === 'completed')
  t.ok(snapshots.length >= 2, `checkpoints completed before the failure (${snapshots.length})`)
  let recorded = 0
  for (const s of snapshots) {
    for (const c of await store.readChunks('cycle-restore', s.id, { kind: 'channel' })) if (c.data.byteLength > 0) recorded++
  }
  t.ok(recorded > 0, `some snapshots held messages in flight on the cycle (${recorded} chunks)`)
  const rescaled = messageCycleJob({ name: 'cycle-restore', ...gen, parallelism: 3 })
  const result = await runJob(rescaled, quiet(store, { checkpoints: { intervalMs: 30 }, restore: 'latest' }))
  t.equal(result.status, 'finished')
  await assertCycleState(t, { store }, 'cycle-restore', expectedCycleState(gen))
})

t.test('cycle through a graph edge - a sends records to b, b sends messages back to a; exact state, all ends', async (t) => {
  const store = tempEmbeddedStore(t)
  const gen = { records: 5_000, keys: 20, seed: 3 }
  const seen = valueState<number>('seen', { default: 0 })
  const j = job('graph-cycle', { maxParallelism: 32 })
  j.source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process<{ key: string; left: number }>(
      'a',
      {
        state: { seen },
        parallelism: 2,
        // A message from b goes round again through the graph edge a -> b while it has hops left.
        onMessage: (left, ctx) => {
          ctx.state(seen).update(ctx.state(seen).value() + 1)
          if ((left as number) > 0) ctx.emit({ key: String(ctx.key), left: (left as number) - 1 })
        },
      },
      (r, ctx) => {
        ctx.state(seen).update(ctx.state(seen).value() + 1)
        ctx.emit({ key: r.key, left: r.seq % 3 })
      },
    )
    .keyBy((r) => r.key)
    .process('b', { state: { seen }, sendsTo: ['a'], parallelism: 3 }, (r, ctx) => {
      ctx.state(seen).update(ctx.state(seen).value() + 1)
      ctx.send('a', ctx.key, r.left)
    })
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 5, maxConcurrent: 3 } }))
  t.equal(result.status, 'finished')
  // Per record with left = seq % 3: a sees the record and left + 1 messages, b sees left + 1 records.
  const wantA = new Map<string, number>()
  const wantB = new Map<string, number>()
  for (let seq = 0; seq < gen.records; seq++) {
    const key = generatedRecord(gen, seq).key
    wantA.set(key, (wantA.get(key) ?? 0) + 1 + (seq % 3) + 1)
    wantB.set(key, (wantB.get(key) ?? 0) + (seq % 3) + 1)
  }
  t.same([...(await readSnapshotState(store, 'graph-cycle', 'a', 'seen'))].sort(), [...wantA].sort())
  t.same([...(await readSnapshotState(store, 'graph-cycle', 'b', 'seen'))].sort(), [...wantB].sort())
})

t.test('checkpoint modes - several checkpoints in flight, and at-least-once, still give exact state without failures', async (t) => {
  const gen = { records: 20_000, keys: 30, seed: 8 }
  for (const [name, checkpoints] of [
    ['concurrent', { intervalMs: 2, maxConcurrent: 4 }],
    ['at-least-once', { intervalMs: 5, mode: 'at-least-once' as const }],
  ] as const) {
    const store = tempEmbeddedStore(t)
    const result = await runJob(messageCycleJob({ name, ...gen }), quiet(store, { checkpoints }))
    t.equal(result.status, 'finished', name)
    t.ok(result.checkpointsCompleted > 1, `${name}: ${result.checkpointsCompleted} checkpoints`)
    await assertCycleState(t, { store }, name, expectedCycleState(gen))
  }
})

t.test('restore - a snapshot taken before the job sent messages restores into a job that does', async (t) => {
  const store = tempEmbeddedStore(t)
  const seen = valueState<number>('seen', { default: 0 })
  const bump = (ctx: { state(d: typeof seen): { value(): number; update(v: number): void } }) => ctx.state(seen).update(ctx.state(seen).value() + 1)
  const before = job('evolve')
  before.source('in', generatorSource({ records: 1_000, keys: 10 }))
    .keyBy((r) => r.key)
    .process('ping', { state: { seen } }, (_r, ctx) => bump(ctx))
  t.equal((await runJob(before, quiet(store, { checkpoints: { intervalMs: 10 } }))).status, 'finished')
  const after = job('evolve')
  after.source('in', generatorSource({ records: 2_000, keys: 10 }))
    .keyBy((r) => r.key)
    .process('ping', { state: { seen }, sendsTo: ['pong'] }, (r, ctx) => {
      bump(ctx)
      ctx.send('pong', r.key, 1)
    })
  after.actor('pong', { state: { seen }, sendsTo: ['pong'], onMessage: (_m, ctx) => bump(ctx) })
  const result = await runJob(after, quiet(store, { checkpoints: { intervalMs: 10 }, restore: 'latest' }))
  t.equal(result.status, 'finished')
  const total = (m: Map<unknown, unknown>) => [...m.values()].reduce((a: number, b) => a + (b as number), 0)
  t.equal(total(await readSnapshotState(store, 'evolve', 'ping', 'seen')), 2_000, 'ping counted the records of both runs')
  t.equal(total(await readSnapshotState(store, 'evolve', 'pong', 'seen')), 1_000, 'pong counted the messages of the second run')
})

t.test('restore - messages in flight to an operator are replayed into it, or refuse the restore if it lost its onMessage', async (t) => {
  const store = tempEmbeddedStore(t)
  await store.open()
  // A snapshot whose channel chunk holds two messages in flight to operator a (key k1 twice).
  const lease = await store.acquireLease('lost')
  const id = await store.nextSnapshotId('lost')
  const layout = { maxParallelism: 8, operators: [{ uid: 'in', parallelism: 1 }, { uid: 'a', parallelism: 1 }] }
  await store.beginSnapshot({ job: 'lost', id, kind: 'checkpoint', attempt: 1, layout, triggeredAt: Date.now() })
  const recorder = new MessageRecorder(1)
  const recording = recorder.onSnapshot(1)
  recorder.onRecords(0, { type: 'records', records: [5, 7], keys: ['k1', 'k1'], groups: [keyGroupOf('k1', 8), keyGroupOf('k1', 8)] })
  await store.writeChunks('lost', id, [{ operatorUid: 'a', kind: 'channel', index: 0, format: 1, data: recording.encode() }])
  await store.completeSnapshot('lost', id, { completedAt: Date.now(), durationMs: 1 })
  await lease.release()
  const withHandler = (onMessage: boolean) => {
    const j = job('lost', { maxParallelism: 8 })
    j.source('in', generatorSource({ records: 10, keys: 2 }))
      .keyBy((r) => r.key)
      .process('a', { state: { count }, ...(onMessage ? { onMessage: (m: unknown, ctx: ProcessContext<string, unknown>) => ctx.state(count).update(ctx.state(count).value() + (m as number)) } : {}) }, (_r, ctx) => {
        ctx.state(count).update(ctx.state(count).value() + 1)
      })
    return j
  }
  const refused = await failure(runJob(withHandler(false), quiet(store, { restore: id })))
  t.type(refused, IncompatibleSnapshotError)
  t.match(refused.message, /operator a: cannot restore a\[0\]: the snapshot holds messages in flight to it, but it has no onMessage any more/)
  const result = await runJob(withHandler(true), quiet(store, { restore: id, checkpoints: { intervalMs: 10 } }))
  t.equal(result.status, 'finished')
  const got = await readSnapshotState(store, 'lost', 'a', 'count')
  t.equal(got.get('k1'), 12 + [...Array(10).keys()].filter((seq) => generatedRecord({ keys: 2 }, seq).key === 'k1').length, 'the messages were handled once, with the records')
})

t.test('definition errors - found when the job graph is taken', async (t) => {
  const base = (sendsTo: unknown, extra?: (j: ReturnType<typeof job>) => void) => {
    const j = job('bad')
    j.source('in', generatorSource({ records: 1, keys: 1 }))
      .keyBy((r) => r.key)
      .process('a', { sendsTo: sendsTo as string[] }, () => {})
      .sink('out', arraySink([]))
    extra?.(j)
    return () => j.graph()
  }
  t.throws(base(['nope']), { name: 'JobDefinitionError', message: /sendsTo names "nope", which is not an operator of the job/ })
  t.throws(base(['out']), { name: 'JobDefinitionError', message: /sendsTo names out, a sink; messages go to keyed operators/ })
  t.throws(base(['a']), { name: 'JobDefinitionError', message: /sendsTo names a, which has no onMessage/ })
  t.throws(() => base('b'), { name: 'JobDefinitionError', message: /sendsTo must be an array of operator names/ })
  t.throws(() => base(['b'], (j) => j.actor('b', { onMessage: async () => {} })), { name: 'JobDefinitionError', message: /onMessage is an async function/ })
  t.throws(() => base(undefined, (j) => j.actor('b', {} as never)), { name: 'JobDefinitionError', message: /an actor needs onMessage/ })
  t.throws(base(undefined, (j) => j.actor('lonely', { onMessage: () => {} })), { name: 'JobDefinitionError', message: /actor lonely has no input and no operator sends to it/ })
  t.throws(() => base(undefined, (j) => j.actor('b', { onMessage: () => {}, parallel: 2 } as never)), { name: 'JobDefinitionError', message: /unknown option parallel/ })
  t.doesNotThrow(base(['b'], (j) => j.actor('b', { onMessage: () => {} })))
})

t.test('run-time errors - send to an undeclared target, a bad key, a throwing or async onMessage', async (t) => {
  const store = tempEmbeddedStore(t)
  const run = (fn: (ctx: { send(o: string, k: unknown, m: unknown): void }) => void, onMessage: (m: unknown) => unknown = () => {}) => {
    const j = job('send-errors')
    j.source('in', generatorSource({ records: 10, keys: 2 }))
      .keyBy((r) => r.key)
      .process('a', { sendsTo: ['b'] }, (_r, ctx) => fn(ctx as never))
    j.actor('b', { onMessage: onMessage as () => void })
    return failure(runJob(j, quiet(store)))
  }
  const undeclared = await run((ctx) => ctx.send('c', 'k', 1))
  t.type(undeclared, JobDefinitionError)
  t.match(String(undeclared), /ctx.send\("c", \.\.\.\): declare the target in process\('a', \{ sendsTo: \[\.\.\.\] \}\) \(it declares b\)/)
  const badKey = await run((ctx) => ctx.send('b', { id: 1 }, 1))
  t.type(badKey.cause, UserCodeError)
  t.match(String(badKey), /keys are strings, finite numbers or bigints/)
  const nanKey = await run((ctx) => ctx.send('b', NaN, 1))
  t.match(String(nanKey), /the key is NaN/)
  const throwing = await run((ctx) => ctx.send('b', 'k1', 1), () => {
    throw 'plain string'
  })
  t.type(throwing.cause, UserCodeError)
  t.match(String(throwing), /operator b\[0\] key "k1": user code threw/)
  const promised = await run((ctx) => ctx.send('b', 'k1', 1), () => Promise.resolve())
  t.match(String(promised), /returned a promise/)
})

t.test('unserializable message - a class instance found in flight by a checkpoint fails the job, naming it', async (t) => {
  const store = tempEmbeddedStore(t)
  class Tick {
    constructor(readonly left: number) {}
  }
  const j = job('class-message')
  j.source('in', generatorSource({ records: 50, keys: 5 }))
    .keyBy((r) => r.key)
    .process('down', { sendsTo: ['down'], onMessage: (m, ctx) => {
      const left = (m as Tick).left
      if (left > 0) ctx.send('down', ctx.key, new Tick(left - 1))
    } }, (_r, ctx) => ctx.send('down', ctx.key, new Tick(5_000)))
  const err = await failure(runJob(j, quiet(store, { checkpoints: { intervalMs: 2 } })))
  t.type(err, UnserializableMessageError)
  t.match(err.message, /operator down, message to key "k\d+": the message holds an instance of class Tick/)
})

t.test('no messages - a job without sendsTo has no message channels and no channel chunks', async (t) => {
  const store = tempEmbeddedStore(t)
  const j = job('plain')
  j.source('in', generatorSource({ records: 100, keys: 3 }))
    .keyBy((r) => r.key)
    .process('count', { state: { count } }, (_r, ctx) => ctx.state(count).update(ctx.state(count).value() + 1))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 } }))
  t.equal(result.status, 'finished')
  t.same(await store.readChunks('plain', result.lastCheckpoint!.id, { kind: 'channel' }), [])
})

t.test('timers in a cycle - event-time timers that messages register after the final watermark still fire, once each, before the job ends', async (t) => {
  const store = tempEmbeddedStore(t)
  const fired = valueState<number>('fired', { default: 0 })
  const gen = { records: 300, keys: 20, seed: 5 }
  const hops = 3
  const out: number[] = []
  const j = job('cycle-timers')
  j.source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process(
      'a',
      {
        state: { fired },
        sendsTo: ['a'],
        // Each hop registers a timer of its own time (record seq * 10 + hop), then passes the chain on.
        onMessage: (m, ctx) => {
          const { seq, hop } = m as { seq: number; hop: number }
          ctx.timers.registerEventTimeTimer(seq * 10 + hop)
          if (hop > 0) ctx.send('a', ctx.key, { seq, hop: hop - 1 })
        },
        onTimer: (time, ctx) => {
          const f = ctx.state(fired)
          f.update(f.value() + 1)
          ctx.emit(time)
        },
      },
      (r, ctx) => ctx.send('a', ctx.key, { seq: r.seq, hop: hops }),
    )
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 } }))
  t.equal(result.status, 'finished')
  const expected: number[] = []
  const perKey = new Map<string, number>()
  for (let seq = 0; seq < gen.records; seq++) {
    const key = generatedRecord(gen, seq).key
    perKey.set(key, (perKey.get(key) ?? 0) + hops + 1)
    for (let hop = 0; hop <= hops; hop++) expected.push(seq * 10 + hop)
  }
  t.same([...out].sort((a, b) => a - b), expected.sort((a, b) => a - b), 'every timer fired exactly once')
  const got = await readSnapshotState(store, 'cycle-timers', 'a', 'fired')
  t.same([...got].sort(), [...perKey].sort(), 'the final snapshot counts every timer once per key')
})
