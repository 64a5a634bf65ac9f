import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  arraySink,
  ConnectorError,
  EmbeddedStore,
  fileSink,
  generatedRecord,
  generatorSource,
  job,
  mapState,
  ndjsonSource,
  readSnapshotState,
  runJob,
  valueState,
  type GeneratedRecord,
  type GeneratorOptions,
  type Key,
  type RunOptions,
  type Source,
} from '../../index.ts'
import { runChild } from '../support/child.ts'

const INDEX_URL = new URL('../../index.ts', import.meta.url).href


interface Fixture {
  dir: string
  store: EmbeddedStore
}

/** A fresh tmp dir with an EmbeddedStore in it, both closed and removed when the test ends. */
function fixture(t: Test): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'weir-pipeline-'))
  const store = new EmbeddedStore({ dir: join(dir, 'snapshots') })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { dir, store }
}

function quiet(store: EmbeddedStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

/** The whole sequence of a generator, computed without running anything. */
function sequence(options: GeneratorOptions): GeneratedRecord[] {
  return Array.from({ length: options.records }, (_, seq) => generatedRecord(options, seq))
}

function countBy<T>(items: readonly T[], keyOf: (x: T) => Key, weight: (x: T) => number = () => 1): Map<Key, number> {
  const out = new Map<Key, number>()
  for (const x of items) out.set(keyOf(x), (out.get(keyOf(x)) ?? 0) + weight(x))
  return out
}

const sorted = <T>(m: Map<Key, T>): [Key, T][] => [...m].sort(([a], [b]) => String(a).localeCompare(String(b)))

t.test('pipeline - map, filter and flatMap chains give exact outputs in order', async (t) => {
  const { store } = fixture(t)
  const gen = { records: 2_000, keys: 10, seed: 7 }
  const out: string[] = []
  const j = job('chain')
  j.source('in', generatorSource(gen))
    .map((r) => ({ seq: r.seq, v: r.value }))
    .filter((r) => r.v % 2 === 0)
    .flatMap<string>((r, emit) => {
      emit(`${r.seq}:${r.v}`)
      if (r.v > 90) emit(`${r.seq}:big`)
    })
    .map((s) => s.toUpperCase())
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(store))
  t.equal(result.status, 'finished')
  const expected: string[] = []
  for (const r of sequence(gen)) {
    if (r.value % 2 !== 0) continue
    expected.push(`${r.seq}:${r.value}`)
    if (r.value > 90) expected.push(`${r.seq}:BIG`)
  }
  t.ok(expected.length > 500, 'the filter keeps a fair share')
  t.same(out, expected)
})

t.test('pipeline - transforms chained after a keyed process and a parallel source give exact outputs', async (t) => {
  const { store } = fixture(t)
  const gen = { records: 3_000, keys: 20 }
  const out: number[] = []
  const j = job('chain-keyed')
  j.source('in', generatorSource(gen), { parallelism: 2 })
    .map((r) => ({ ...r, value: r.value * 10 }))
    .keyBy((r) => r.key)
    .process<GeneratedRecord>('pass', { parallelism: 3 }, (r, ctx) => ctx.emit(r))
    .filter((r) => r.seq % 3 === 0)
    .map((r) => r.value)
    .sink('out', arraySink(out))
  await runJob(j, quiet(store))
  const expected = sequence(gen)
    .filter((r) => r.seq % 3 === 0)
    .map((r) => r.value * 10)
  t.same([...out].sort((a, b) => a - b), expected.sort((a, b) => a - b), 'the same multiset of values')
})

t.test('pipeline - union of two sources then keyBy count gives exact counts', async (t) => {
  const { store } = fixture(t)
  const a = { records: 4_000, keys: 30, seed: 1 }
  const b = { records: 3_000, keys: 50, seed: 2 }
  const count = valueState<number>('count', { default: 0 })
  const out: { key: string; n: number }[] = []
  const j = job('union-count')
  const first = j.source('a', generatorSource(a))
  const second = j.source('b', generatorSource(b), { parallelism: 2 })
  first
    .union(second)
    .keyBy((r) => r.key)
    .process<{ key: string; n: number }>('count', { state: { count }, parallelism: 2 }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
      ctx.emit({ key: ctx.key, n: c.value() })
    })
    .sink('out', arraySink(out))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 20 } }))
  const expected = countBy([...sequence(a), ...sequence(b)], (r) => r.key)
  t.equal(out.length, a.records + b.records, 'one output per input record')
  const highest = new Map<Key, number>()
  for (const o of out) highest.set(o.key, Math.max(highest.get(o.key) ?? 0, o.n))
  t.same(sorted(highest), sorted(expected), 'the last count emitted per key')
  t.ok(result.lastCheckpoint !== undefined, 'a final checkpoint was taken')
  t.same(sorted(await readSnapshotState(store, 'union-count', 'count', 'count')), sorted(expected), 'the final state')
})

t.test('pipeline - connect of two keyed streams shares keyed state between both functions', async (t) => {
  const { store } = fixture(t)
  const orders = { records: 2_500, keys: 40, seed: 11 }
  const payments = { records: 1_500, keys: 40, seed: 12 }
  const seen = mapState<string, number>('seen')
  const j = job('connect')
  const o = j.source('orders', generatorSource(orders)).keyBy((r) => r.key)
  const p = j
    .source('payments', generatorSource(payments))
    .map((r) => ({ account: r.key, amount: r.value }))
    .keyBy((r) => r.account)
  const bump = (m: { get(k: string): number | undefined; put(k: string, v: number): void }, which: string) => m.put(which, (m.get(which) ?? 0) + 1)
  const out: string[] = []
  o.connect(p)
    .process<string>(
      'join',
      { state: { seen }, parallelism: 3 },
      {
        first: (_r, ctx) => bump(ctx.state(seen), 'orders'),
        second: (r, ctx) => {
          bump(ctx.state(seen), 'payments')
          if (r.account !== ctx.key) ctx.emit(`wrong key ${String(ctx.key)}`)
        },
      },
    )
    .sink('out', arraySink(out))
  await runJob(j, quiet(store, { checkpoints: { intervalMs: 20 } }))
  t.same(out, [], 'the second function sees the key of its own key selector')
  const byOrders = countBy(sequence(orders), (r) => r.key)
  const byPayments = countBy(sequence(payments), (r) => r.key)
  const state = await readSnapshotState(store, 'connect', 'join', 'seen')
  const keys = new Set([...byOrders.keys(), ...byPayments.keys()])
  t.equal(state.size, keys.size, 'one map per key seen on either stream')
  for (const key of keys) {
    const m = state.get(key) as Map<string, number> | undefined
    t.same(
      { orders: m?.get('orders'), payments: m?.get('payments') },
      { orders: byOrders.get(key), payments: byPayments.get(key) },
      `key ${String(key)}: both streams counted in one state`,
    )
  }
})

/** Count and sum per key over `gen`, run with the keyed operator at `parallelism`; returns the final state. */
async function countAndSum(store: EmbeddedStore, name: string, gen: GeneratorOptions, parallelism: number) {
  const count = valueState<number>('count', { default: 0 })
  const sum = valueState<number>('sum', { default: 0 })
  const j = job(name, { maxParallelism: 64 })
  j.source('in', generatorSource(gen), { parallelism: 2 })
    .keyBy((r) => r.key)
    .process('totals', { state: { count, sum }, parallelism }, (r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
      const s = ctx.state(sum)
      s.update(s.value() + r.value)
    })
    .sink('out', arraySink<unknown>([]))
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 } }))
  return {
    result,
    count: await readSnapshotState(store, name, 'totals', 'count'),
    sum: await readSnapshotState(store, name, 'totals', 'sum'),
  }
}

t.test('pipeline - parallelism 1, 2 and 3 of the keyed operator give the same final state', async (t) => {
  const { store } = fixture(t)
  const gen = { records: 20_000, keys: 500, seed: 3 }
  const expectedCount = countBy(sequence(gen), (r) => r.key)
  const expectedSum = countBy(sequence(gen), (r) => r.key, (r) => r.value)
  for (const p of [1, 2, 3]) {
    const { result, count, sum } = await countAndSum(store, `rescale-${p}`, gen, p)
    t.equal(result.status, 'finished')
    t.same(sorted(count), sorted(expectedCount), `parallelism ${p}: counts`)
    t.same(sorted(sum), sorted(expectedSum), `parallelism ${p}: sums`)
  }
})

t.test('pipeline - ndjsonSource reads one object per line and skips blank lines', async (t) => {
  const { dir, store } = fixture(t)
  const path = join(dir, 'in.ndjson')
  const rows = Array.from({ length: 500 }, (_, i) => ({ id: i, name: `n${i}`, tags: i % 3 === 0 ? ['x'] : [] }))
  // Blank lines, whitespace-only lines, CRLF endings, and no newline after the last line.
  const text = rows.map((r, i) => JSON.stringify(r) + (i % 50 === 0 ? '\n\n   \n' : i % 7 === 0 ? '\r\n' : '\n')).join('').trimEnd()
  writeFileSync(path, text)
  for (const parallelism of [1, 2]) {
    const out: typeof rows = []
    const j = job(`ndjson-${parallelism}`)
    j.source('in', ndjsonSource<(typeof rows)[number]>({ path }), { parallelism }).sink('out', arraySink(out))
    await runJob(j, quiet(store))
    t.same(
      [...out].sort((a, b) => a.id - b.id),
      rows,
      `parallelism ${parallelism}: every row once`,
    )
    if (parallelism === 1) t.same(out, rows, 'in file order')
  }
})

t.test('pipeline - ndjsonSource reads records larger than its read buffer', async (t) => {
  const { dir, store } = fixture(t)
  const path = join(dir, 'big.ndjson')
  const rows = Array.from({ length: 5 }, (_, i) => ({ id: i, blob: String.fromCharCode(97 + i).repeat(100_000) }))
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
  const out: typeof rows = []
  const j = job('ndjson-big')
  j.source('in', ndjsonSource<(typeof rows)[number]>({ path })).sink('out', arraySink(out))
  await runJob(j, quiet(store))
  t.same(out, rows)
})

t.test('pipeline - a line that is not JSON fails runJob with ConnectorError naming the file and line', async (t) => {
  const { dir, store } = fixture(t)
  const path = join(dir, 'bad.ndjson')
  writeFileSync(path, ['{"a":1}', '', '{"a":2}', '{"a": oops}', '{"a":3}'].join('\n') + '\n')
  let opens = 0
  const inner = ndjsonSource<{ a: number }>({ path })
  const counted: Source<{ a: number }> = {
    kind: 'counted',
    open: (ctx) => {
      opens++
      return inner.open(ctx)
    },
  }
  const j = job('ndjson-bad')
  j.source('in', counted).sink('out', arraySink<{ a: number }>([]))
  // The default restart strategy: a bad line is not retried.
  const err = await runJob(j, { store, logLevel: 'silent', progressIntervalMs: 0 }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.type(err, ConnectorError)
  const e = err as ConnectorError
  t.equal(e.operator, 'in')
  t.equal(e.retryable, false)
  t.match(e.message, `${path}:4: not JSON`, 'the file and the 1-based line number')
  t.equal(opens, 1, 'no restart')
})

t.test('pipeline - ndjsonSource on a missing file fails with ConnectorError', async (t) => {
  const { dir, store } = fixture(t)
  const path = join(dir, 'missing.ndjson')
  const j = job('ndjson-missing')
  j.source('in', ndjsonSource({ path })).sink('out', arraySink<unknown>([]))
  await t.rejects(runJob(j, quiet(store)), { name: 'ConnectorError', message: `cannot open ${path}: ENOENT` })
})

t.test('pipeline - fileSink appends one line per record, JSON by default or with a format', async (t) => {
  const { dir, store } = fixture(t)
  const gen = { records: 300, keys: 5 }
  const jsonPath = join(dir, 'out.jsonl')
  const csvPath = join(dir, 'out.csv')
  const j = job('files')
  const s = j.source('in', generatorSource(gen))
  s.sink('json', fileSink({ path: jsonPath }))
  s.sink('csv', fileSink<GeneratedRecord>({ path: csvPath, format: (r) => `${r.seq},${r.key},${r.value}` }))
  await runJob(j, quiet(store))
  const lines = (p: string) => readFileSync(p, 'utf8').split('\n')
  t.same(lines(jsonPath), [...sequence(gen).map((r) => JSON.stringify(r)), ''], 'JSON lines, each ending with a newline')
  t.same(lines(csvPath), [...sequence(gen).map((r) => `${r.seq},${r.key},${r.value}`), ''])
  await runJob(j, quiet(store))
  t.equal(lines(jsonPath).length, 2 * gen.records + 1, 'a second run appends')
})

t.test('pipeline - a parallel fileSink writes path, path.1, ... one file per instance', async (t) => {
  const { dir, store } = fixture(t)
  const gen = { records: 1_000, keys: 5 }
  const path = join(dir, 'parts.jsonl')
  const j = job('file-parts')
  j.source('in', generatorSource(gen)).sink('out', fileSink<GeneratedRecord>({ path, format: (r) => String(r.seq) }), { parallelism: 3 })
  await runJob(j, quiet(store))
  const all = [path, `${path}.1`, `${path}.2`].flatMap((p) => readFileSync(p, 'utf8').split('\n').filter((l) => l !== ''))
  t.same(all.map(Number).sort((a, b) => a - b), sequence(gen).map((r) => r.seq))
})

/** Reads a generator source instance to its end without a job. */
function drain(options: GeneratorOptions, instance = 0, parallelism = 1): GeneratedRecord[] {
  const reader = generatorSource(options).open({ job: 'j', operator: 'in', instance, parallelism })
  if (reader instanceof Promise) throw new Error('generatorSource opens synchronously')
  const out: GeneratedRecord[] = []
  let polls = 0
  while (reader.poll((r) => out.push(r), 64) !== 'end') if (++polls > 10_000) throw new Error('never ended')
  return out
}

t.test('generatorSource - deterministic: the same seed gives the same records, generatedRecord included', async (t) => {
  const gen = { records: 1_000, keys: 17, seed: 42 }
  const once = drain(gen)
  t.same(drain(gen), once, 'two readers, the same records')
  t.same(once, sequence(gen), 'generatedRecord(seq) is what the source emits')
  const keys = (rs: GeneratedRecord[]) => rs.map((r) => `${r.key}/${r.value}`).join(',')
  t.not(keys(drain({ ...gen, seed: 43 })), keys(once), 'another seed, another sequence')
  t.same(drain({ records: 1_000, keys: 17 }), sequence({ records: 1_000, keys: 17, seed: 1 }), 'the default seed is 1')
  for (const r of once) {
    if (!(r.value >= 1 && r.value <= 100 && Number.isInteger(r.value))) t.fail(`value out of 1..100: ${r.value}`)
    if (!/^k(\d|1[0-6])$/.test(r.key)) t.fail(`key out of k0..k16: ${r.key}`)
  }
  t.equal(new Set(once.map((r) => r.key)).size, 17, 'every key occurs')
})

t.test('generatorSource - parallel instances split the sequence by position, each record once', async (t) => {
  const gen = { records: 1_001, keys: 9 }
  const parts = [0, 1, 2].map((i) => drain(gen, i, 3))
  parts.forEach((part, i) => t.ok(part.every((r) => r.seq % 3 === i), `instance ${i} takes seq % 3 === ${i}`))
  t.same(
    parts.flat().sort((a, b) => a.seq - b.seq),
    sequence(gen),
  )
})

t.test('generatorSource - resumes exactly from its offset', async (t) => {
  const gen = { records: 500, keys: 9 }
  const first = generatorSource(gen).open({ job: 'j', operator: 'in', instance: 1, parallelism: 2 })
  if (first instanceof Promise) throw new Error('generatorSource opens synchronously')
  const before: GeneratedRecord[] = []
  first.poll((r) => before.push(r), 40)
  const offset = first.offset()
  const second = generatorSource(gen).open({ job: 'j', operator: 'in', instance: 1, parallelism: 2 })
  if (second instanceof Promise) throw new Error('generatorSource opens synchronously')
  second.restore?.(offset)
  const after: GeneratedRecord[] = []
  while (second.poll((r) => after.push(r), 64) !== 'end');
  t.same([...before, ...after], drain(gen, 1, 2), 'nothing skipped, nothing repeated')
  t.throws(() => second.restore?.(4), /generator offset 4 does not belong to instance 1 of 2/, 'an offset of another instance is refused')
})

t.test('generatorSource - a whole run emits exactly the generated sequence', async (t) => {
  const { store } = fixture(t)
  const gen = { records: 5_000, keys: 33, seed: 9 }
  const out: GeneratedRecord[] = []
  const j = job('gen-run')
  j.source('in', generatorSource(gen), { parallelism: 2 }).sink('out', arraySink(out))
  await runJob(j, quiet(store))
  t.same(
    out.sort((a, b) => a.seq - b.seq),
    sequence(gen),
  )
})

t.test('pipeline - a keyed operator and a sink of the same parallelism (forward edge) finish with checkpoints on', async (t) => {
  // A forward edge connects instance i only to instance i. An instance must not wait for credit
  // from channels nobody reads, however many checkpoint barriers went into them. Run in a child
  // process: while this hangs, ending the stuck attempt also breaks setImmediate in its process
  // (see lifecycle.test.ts), which would stall every later test of this file.
  const { dir } = fixture(t)
  const script = `
    import { job, generatorSource, valueState, runJob, EmbeddedStore } from ${JSON.stringify(INDEX_URL)}
    const store = new EmbeddedStore({ dir: process.env.WEIR_TEST_DIR })
    // 60 000 records at 100 000 a second: 600 ms, dozens of 10 ms checkpoints.
    const gen = { records: 60_000, keys: 100, ratePerSecond: 100_000 }
    const count = valueState('count', { default: 0 })
    let received = 0
    const j = job('forward')
    j.source('in', generatorSource(gen))
      .keyBy((r) => r.key)
      .process('count', { state: { count }, parallelism: 2 }, (r, ctx) => {
        const c = ctx.state(count)
        c.update(c.value() + 1)
        ctx.emit(r)
      })
      .sink('out', { kind: 'counting', open: () => ({ write: (records) => void (received += records.length) }) }, { parallelism: 2 })
    // A stuck checkpoint times out after 1.5 s and fails the run instead of hanging. Channels of
    // two batches: a few checkpoints are enough to fill any channel nobody reads.
    const options = {
      store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' },
      checkpoints: { intervalMs: 10, timeoutMs: 1500 }, tuning: { channelCapacity: 2 },
    }
    let checkpoints = 0
    const outcome = await runJob(j, options).then((r) => ((checkpoints = r.checkpointsCompleted), r.status), (e) => 'rejected: ' + e.message)
    console.log(JSON.stringify({ outcome, received, checkpoints }))
    process.exit(0)
  `
  const { outcome, received, checkpoints } = (await runChild(script, dir, 20_000)) as { outcome: string; received: number; checkpoints: number }
  t.equal(outcome, 'finished', `the job finished (records that reached the sink: ${received} of 60000)`)
  t.equal(received, 60_000)
  if (outcome === 'finished') t.ok(checkpoints > 2, `more checkpoints (${checkpoints}) than a channel holds batches, so the test means something`)
})
