/**
 * Operator (non-keyed) list state: redistribution on rescale, the operator chunk format, rescalable
 * generator sources, and a non-keyed process whose lists survive a restore with another parallelism.
 */
import t, { type Test } from 'tap'
import {
  arraySink,
  boundedOutOfOrderness,
  generatedRecord,
  generatorSource,
  IncompatibleSnapshotError,
  job,
  JobDefinitionError,
  listState,
  operatorListState,
  readSnapshotState,
  runJob,
  startJob,
  valueState,
  type GeneratorOptions,
  type RunOptions,
  type Sink,
  type SnapshotStore,
} from '../../index.ts'
import { decodeOperatorChunk, encodeOperatorChunk, OPERATOR_CHUNK_FORMAT, redistribute, sourceRestoreOffset, splitEvenly, type OperatorChunk } from '../../actors/state/operator-state.ts'
import { cborSerde } from '../../persistence/serde.ts'
import type { ConnectorContext, SourceReader } from '../../actors/connectors/types.ts'
import { failure } from '../support/expect.ts'
import { embeddedTestStore } from '../support/stores.ts'

t.test('redistribution - split evenly: even and uneven sizes, larger parts first, order kept', async (t) => {
  t.same(splitEvenly([1, 2, 3, 4, 5, 6], 3), [[1, 2], [3, 4], [5, 6]])
  t.same(splitEvenly([1, 2, 3, 4, 5, 6, 7], 3), [[1, 2, 3], [4, 5], [6, 7]])
  t.same(splitEvenly([1, 2], 4), [[1], [2], [], []])
  t.same(splitEvenly([], 2), [[], []])
  t.throws(() => splitEvenly([1], 0), RangeError)
})

t.test('redistribution - split: same parallelism keeps each list, scale up and down concatenate and split', async (t) => {
  const old = [[1, 2, 3], [4], [5, 6]]
  t.same(redistribute(old, 'split', 3), [[1, 2, 3], [4], [5, 6]], 'same parallelism: own list back')
  t.same(redistribute(old, 'split', 4), [[1, 2], [3, 4], [5], [6]], 'scale up')
  t.same(redistribute(old, 'split', 2), [[1, 2, 3], [4, 5, 6]], 'scale down')
  t.same(redistribute(old, 'split', 1), [[1, 2, 3, 4, 5, 6]], 'down to one')
  const out = redistribute(old, 'split', 5)
  t.same(out.flat().sort(), [1, 2, 3, 4, 5, 6], 'no element lost or repeated')
  out[0]!.push(99)
  t.same(old[0], [1, 2, 3], 'the old lists are not shared with the new ones')
})

t.test('redistribution - union: every new instance gets the whole concatenation, at any parallelism', async (t) => {
  const old = [['a'], ['b', 'c']]
  t.same(redistribute(old, 'union', 2), [['a', 'b', 'c'], ['a', 'b', 'c']])
  t.same(redistribute(old, 'union', 3), [['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c']])
  t.same(redistribute(old, 'union', 1), [['a', 'b', 'c']])
  const out = redistribute(old, 'union', 2)
  out[0]!.push('x')
  t.same(out[1], ['a', 'b', 'c'], 'each instance has its own copy')
})

t.test('operatorListState - bad arguments fail at once with what to do', async (t) => {
  t.throws(() => operatorListState(''), JobDefinitionError)
  t.throws(() => operatorListState('x', { distribution: 'round-robin' as never }), /distribution must be 'split' or 'union'/)
  t.throws(() => operatorListState('x', { serde: {} as never }), /serde needs encode/)
  t.throws(() => operatorListState('x', { ttlMs: 5 } as never), /unknown option ttlMs/)
  t.equal(operatorListState('x').distribution, 'split', 'split by default')
  const j = job('bad-op-state')
  const s = j.source('in', generatorSource({ records: 1, keys: 1 }))
  t.throws(() => s.process('p', { state: { v: valueState('v') as never } }, () => {}), /not an operator state descriptor.*value state is keyed: keyBy the stream first/)
  t.throws(() => s.process('p', {}, (async () => {}) as never), /async function/)
  t.throws(() => s.process('p', { paralelism: 2 } as never, () => {}), /unknown option paralelism/)
  t.throws(() => s.keyBy((r) => r.key).process('k', { state: { o: operatorListState('o') as never } }, () => {}), /is not a state descriptor/)
})

t.test('operator chunk - format 2 round trip, format 1 (a source offset) still read, newer refused', async (t) => {
  const chunk: OperatorChunk = { splits: [[0, 6]], lists: [{ name: 'l', distribution: 'union', items: [1, 'a'] }], broadcast: [{ name: 'b', entries: ['k', 1] }] }
  t.same(decodeOperatorChunk(OPERATOR_CHUNK_FORMAT, encodeOperatorChunk(chunk)), chunk)
  t.equal(encodeOperatorChunk({ lists: [] }).byteLength, 0, 'nothing to keep: an empty chunk')
  t.same(decodeOperatorChunk(1, cborSerde().encode(42)), { offset: 42 }, 'format 1 holds a source offset')
  t.same(decodeOperatorChunk(2, new Uint8Array(0)), {})
  t.throws(() => decodeOperatorChunk(3, new Uint8Array(1)), /format 3 is newer/)
  t.throws(() => decodeOperatorChunk(2, cborSerde().encode([1])), /does not hold an object/)
})

t.test('source restore - own offset at the same parallelism, split states redistributed when rescalable', async (t) => {
  t.same(sourceRestoreOffset([{ offset: 4 }, { offset: 5 }], 1, 2, false), { offset: 5 })
  t.equal(sourceRestoreOffset([], 0, 2, false), undefined, 'an operator new to the snapshot starts fresh')
  const old = [{ splits: [[0, 10], [2, 12]] }, { splits: [[1, 11]] }]
  t.same(sourceRestoreOffset(old, 0, 3, true), { offset: [[0, 10]] })
  t.same(sourceRestoreOffset(old, 2, 3, true), { offset: [[1, 11]] })
  t.same(sourceRestoreOffset(old, 3, 4, true), { offset: [] }, 'an instance without a split is told so (it reads nothing)')
  t.throws(() => sourceRestoreOffset([{ offset: 4 }, { offset: 5 }], 0, 3, true), /written when the source was not rescalable.*parallelism 2/)
})

const quiet = (store: SnapshotStore, extra: Partial<RunOptions> = {}): RunOptions => ({ store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra })

/** Waits until a completed checkpoint exists and `moreMs` passed, then cancels. */
async function cancelAfterCheckpoint(t: Test, handle: ReturnType<typeof startJob>, store: SnapshotStore, jobName: string, moreMs: number): Promise<void> {
  const until = Date.now() + 30_000
  while ((await store.latestCompleted(jobName)) === undefined) {
    if (Date.now() > until) throw new Error('no checkpoint completed within 30 s')
    await new Promise((r) => setTimeout(r, 10))
  }
  await new Promise((r) => setTimeout(r, moreMs))
  await handle.cancel()
  const result = await handle.done
  t.equal(result.status, 'canceled', 'the run was canceled part-way')
}

t.test('generator splits - readers restored at another parallelism read every position once', async (t) => {
  const gen = { records: 1_000, keys: 7, seed: 3, splits: 5 }
  const ctx = (instance: number, parallelism: number): ConnectorContext => ({ job: 'j', operator: 'in', instance, parallelism })
  const read = (r: SourceReader<{ seq: number }>, max: number, into: number[]) => r.poll((x) => into.push(x.seq), max)
  const src = generatorSource(gen)
  t.equal(src.rescalable, true)
  const seen: number[] = []
  const first = await Promise.all([0, 1].map((i) => src.open(ctx(i, 2))))
  read(first[0]!, 150, seen)
  read(first[1]!, 40, seen)
  const offsets = first.map((r) => r.offset() as unknown[])
  for (const p of [3, 1, 4]) {
    const shares = redistribute(offsets, 'split', p)
    const runSeen = [...seen]
    const readers = await Promise.all(shares.map(async (share, i) => {
      const r = await src.open(ctx(i, p))
      await r.restore!(share)
      return r
    }))
    for (const r of readers) while (read(r, 97, runSeen) !== 'end');
    t.same(runSeen.sort((a, b) => a - b), Array.from({ length: gen.records }, (_, i) => i), `restored at ${p}: every position exactly once`)
  }
  const r = await src.open(ctx(0, 1))
  await t.rejects(async () => r.restore!(7), /taken without the splits option/)
  await t.rejects(async () => r.restore!([[1, 12]]), /does not fit 5 splits/)
  t.throws(() => generatorSource({ ...gen, splits: 0 }), /splits must be a positive integer/)
})

const seqs = listState<number>('seqs')

function collectingJob(name: string, gen: GeneratorOptions, sourceParallelism: number) {
  return job(name, { maxParallelism: 32 })
    .source('in', generatorSource(gen), { parallelism: sourceParallelism })
    .keyBy((r) => r.key)
    .process('collect', { state: { seqs }, parallelism: 2 }, (r, ctx) => ctx.state(seqs).add(r.seq)).job
}

function expectedSeqs(gen: GeneratorOptions): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (let seq = 0; seq < gen.records; seq++) {
    const r = generatedRecord(gen, seq)
    out.set(r.key, [...(out.get(r.key) ?? []), seq])
  }
  return out
}

t.test('rescalable source - a generator job restored at source parallelism 2 -> 3 -> 1 gives exact per-key sequences', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const name = 'split-rescale'
  const gen = { records: 30_000, keys: 40, seed: 11, splits: 6, ratePerSecond: 20_000 }
  const checkpoints = { intervalMs: 20 }
  let handle = startJob(collectingJob(name, gen, 2), quiet(ts.store, { checkpoints }))
  await cancelAfterCheckpoint(t, handle, ts.store, name, 200)
  handle = startJob(collectingJob(name, gen, 3), quiet(ts.store, { checkpoints, restore: 'latest' }))
  await cancelAfterCheckpoint(t, handle, ts.store, name, 300)
  const partWay = [...(await readSnapshotState(ts.store, name, 'collect', 'seqs')).values()].flat().length
  t.ok(partWay > 0 && partWay < gen.records, `the snapshot restored last is part-way (${partWay} of ${gen.records})`)
  const result = await runJob(collectingJob(name, gen, 1), quiet(ts.store, { checkpoints, restore: 'latest' }))
  t.equal(result.status, 'finished')
  const got = await readSnapshotState(ts.store, name, 'collect', 'seqs')
  const want = expectedSeqs(gen)
  t.equal(got.size, want.size, 'every key')
  let wrong = 0
  for (const [k, v] of want) if (JSON.stringify([...(got.get(k) as number[])].sort((a, b) => a - b)) !== JSON.stringify(v)) wrong++
  t.equal(wrong, 0, 'every key holds each of its positions exactly once')
})

t.test('rescale refused - a source that cannot reassign its splits keeps its parallelism', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const gen = { records: 2_000, keys: 5 }
  await runJob(collectingJob('fixed-src', gen, 2), quiet(ts.store, { checkpoints: { intervalMs: 50 } }))
  const err = await failure(runJob(collectingJob('fixed-src', gen, 3), quiet(ts.store, { checkpoints: { intervalMs: 50 }, restore: 'latest' })))
  t.type(err, IncompatibleSnapshotError)
  t.match(err.message, /parallelism of in changed from 2 to 3; source in \(generator\) cannot be rescaled.*rescalable: true.*Set its parallelism back to 2/)
  const withSplits = await failure(runJob(collectingJob('fixed-src', { ...gen, splits: 4 }, 2), quiet(ts.store, { checkpoints: { intervalMs: 50 }, restore: 'latest' })))
  t.match(withSplits.message, /taken without the splits option/, 'adding splits to a snapshot without them is a clear error')
})

/** Reads every instance's list `name` of operator `op` from the latest completed snapshot. */
async function operatorLists(store: SnapshotStore, jobName: string, op: string, name: string): Promise<unknown[][]> {
  const id = (await store.latestCompleted(jobName))!.id
  const out: unknown[][] = []
  for (const c of await store.readChunks(jobName, id, { operatorUid: op, kind: 'operator' })) {
    out[c.index] = decodeOperatorChunk(c.format, c.data).lists?.find((l) => l.name === name)?.items ?? []
  }
  return out
}

t.test('non-keyed process - split and union lists survive a restore at parallelism 2 -> 3, exactly', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const name = 'tally'
  const gen = { records: 20_000, keys: 10, seed: 4, splits: 4, ratePerSecond: 20_000 }
  const seen = operatorListState<number>('seen')
  const runs = operatorListState<string>('runs', { distribution: 'union' })
  const out: number[] = []
  const tallyJob = (run: string, parallelism: number) => {
    const j = job(name)
    j.source('in', generatorSource(gen), { parallelism: 2 })
      .process<number>('tally', { state: { seen, runs }, parallelism }, (r, ctx) => {
        ctx.state(seen).add(r.seq)
        const mine = `${run}-${ctx.instance}`
        const rs = ctx.state(runs)
        if (!rs.get().includes(mine)) rs.add(mine)
        ctx.emit(r.seq)
      })
      .sink('out', arraySink(out))
    return j
  }
  const checkpoints = { intervalMs: 20 }
  const first = startJob(tallyJob('a', 2), quiet(ts.store, { checkpoints }))
  await cancelAfterCheckpoint(t, first, ts.store, name, 200)
  const result = await runJob(tallyJob('b', 3), quiet(ts.store, { checkpoints, restore: 'latest', strictState: true }))
  t.equal(result.status, 'finished')
  const lists = await operatorLists(ts.store, name, 'tally', 'seen')
  t.equal(lists.length, 3, 'three instances wrote their lists')
  t.same((lists.flat() as number[]).sort((a, b) => a - b), Array.from({ length: gen.records }, (_, i) => i), 'the split lists hold every position exactly once')
  t.ok(lists.every((l) => l.length > 0), 'each new instance got a share')
  const union = await operatorLists(ts.store, name, 'tally', 'runs')
  for (let i = 0; i < 3; i++) t.same([...(union[i] as string[])].sort(), ['a-0', 'a-1', `b-${i}`].sort(), `instance ${i} got both old instances' entries (union) and added its own`)
  t.ok(out.length >= gen.records, 'every record reached the sink (some twice after the restore: sinks are at-least-once)')
})

t.test('non-keyed process - an undeclared state, a throw and an async result fail the job clearly', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const declared = operatorListState<number>('declared')
  const other = operatorListState<number>('other')
  const run = (fn: (r: { seq: number }, ctx: { state: (d: typeof other) => unknown }) => unknown) => {
    const j = job('bad-process')
    j.source('in', generatorSource({ records: 10, keys: 1 })).process('p', { state: { declared } }, fn as never).sink('out', arraySink([]))
    return runJob(j, quiet(ts.store))
  }
  t.match((await failure(run((_r, ctx) => ctx.state(other)))).message, /ctx.state\("other"\): declare it in process\('p'/)
  const thrown = await failure(run(() => {
    throw 'plain string'
  }))
  t.match(thrown.message, /operator p\[0\]/)
  t.match((await failure(run(() => Promise.resolve()))).message, /promise/i)
})

t.test('compatibility - a snapshot whose source offset is a format 1 chunk (written before operator state) restores', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const name = 'format-1'
  const gen = { records: 1_000, keys: 5, seed: 2 }
  const total = valueState<number>('total', { default: 0 })
  const counting = job(name, { maxParallelism: 4 })
  counting
    .source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process('count', { state: { total } }, (_r, ctx) => ctx.state(total).update(ctx.state(total).value() + 1))
  // A snapshot as the previous release wrote it: the source's offset as plain CBOR, format 1.
  const lease = await ts.store.acquireLease(name)
  await ts.store.beginSnapshot({
    job: name,
    id: 1,
    kind: 'checkpoint',
    attempt: 1,
    triggeredAt: Date.now(),
    layout: { maxParallelism: 4, operators: [{ uid: 'in', parallelism: 1, chunks: ['operator'] }, { uid: 'count', parallelism: 1, chunks: ['keyed'] }] },
  })
  await ts.store.writeChunks(name, 1, [
    { operatorUid: 'in', kind: 'operator', index: 0, format: 1, data: cborSerde().encode(600) },
    ...[0, 1, 2, 3].map((g) => ({ operatorUid: 'count', kind: 'keyed' as const, index: g, format: 1, data: new Uint8Array(0) })),
  ])
  await ts.store.completeSnapshot(name, 1, { completedAt: Date.now(), durationMs: 1 })
  await lease.release()
  const result = await runJob(counting, quiet(ts.store, { checkpoints: { intervalMs: 50 }, restore: 'latest' }))
  t.equal(result.status, 'finished')
  const got = [...(await readSnapshotState(ts.store, name, 'count', 'total')).values()].reduce((a: number, b) => a + (b as number), 0)
  t.equal(got, gen.records - 600, 'the source resumed at the offset of the old chunk')
  const chunks = await ts.store.readChunks(name, result.lastCheckpoint!.id, { operatorUid: 'in', kind: 'operator' })
  t.equal(chunks[0]!.format, OPERATOR_CHUNK_FORMAT, 'new snapshots are written in the current format')
})

t.test("sink operator state - a writer's lists survive a restore at sink parallelism 2 -> 3, exactly", async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const name = 'sink-state'
  const gen = { records: 20_000, keys: 10, seed: 5, splits: 4, ratePerSecond: 20_000 }
  const written = operatorListState<number>('written')
  const firstWrites: number[][] = []
  const recordingSink: Sink<{ seq: number }> = {
    kind: 'recording',
    operatorState: [written as never],
    open(ctx) {
      const list = ctx.operatorState!(written)
      let first = true
      return {
        write(records) {
          if (first) firstWrites[ctx.instance] = [...list.get()]
          first = false
          for (const r of records) list.add(r.seq)
        },
      }
    },
  }
  const sinkJob = (parallelism: number) => {
    const j = job(name)
    j.source('in', generatorSource(gen), { parallelism: 2 }).sink('out', recordingSink, { parallelism })
    return j
  }
  const checkpoints = { intervalMs: 20 }
  const first = startJob(sinkJob(2), quiet(ts.store, { checkpoints }))
  await cancelAfterCheckpoint(t, first, ts.store, name, 200)
  firstWrites.length = 0
  const result = await runJob(sinkJob(3), quiet(ts.store, { checkpoints, restore: 'latest' }))
  t.equal(result.status, 'finished')
  t.ok(firstWrites.some((l) => l !== undefined && l.length > 0), 'the writers saw their restored share before their first write')
  const lists = await operatorLists(ts.store, name, 'out', 'written')
  t.equal(lists.length, 3)
  t.same((lists.flat() as number[]).sort((a, b) => a - b), Array.from({ length: gen.records }, (_, i) => i), 'the lists hold every record exactly once')
  t.throws(() => job('bad-sink').source('in', generatorSource(gen)).sink('x', { ...recordingSink, operatorState: [valueState('v')] as never }), /not an operator state descriptor/)
})

t.test('non-keyed process - event time passes through: ctx.timestamp, and emitted records keep their time downstream', async (t) => {
  const ts = embeddedTestStore()
  t.teardown(() => ts.cleanup())
  await ts.store.open()
  const total = valueState<number>('total', { default: 0 })
  const stamps: (number | undefined)[] = []
  const j = job('op-event-time')
  j.source('in', generatorSource({ records: 2_000, keys: 5 }), { watermarks: boundedOutOfOrderness({ timestamp: (r) => r.seq * 10, maxOutOfOrdernessMs: 0 }) })
    .process<{ key: string; seq: number }>('pass', { parallelism: 2 }, (r, ctx) => {
      stamps.push(ctx.timestamp === r.seq * 10 ? undefined : ctx.timestamp ?? -1)
      ctx.emit(r)
    })
    .keyBy((r) => r.key)
    .process('count', { state: { total }, lateRecords: 'drop' }, (_r, ctx) => ctx.state(total).update(ctx.state(total).value() + 1))
  const result = await runJob(j, quiet(ts.store, { checkpoints: { intervalMs: 50 } }))
  t.equal(result.status, 'finished')
  t.equal(stamps.length, 2_000)
  t.ok(stamps.every((s) => s === undefined), 'ctx.timestamp is the record\'s event time')
  const counted = [...(await readSnapshotState(ts.store, 'op-event-time', 'count', 'total')).values()].reduce((a: number, b) => a + (b as number), 0)
  t.equal(counted, 2_000, 'no record became late downstream: each kept its time')
})
