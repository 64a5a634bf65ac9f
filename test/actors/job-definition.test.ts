import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  arraySink,
  EmbeddedStore,
  fileSink,
  generatorSource,
  InvalidOptionError,
  job,
  JobDefinitionError,
  KeySelectorError,
  listState,
  ndjsonSource,
  runJob,
  UnknownOptionError,
  valueState,
  type CheckpointOptions,
  type GeneratedRecord,
  type JobBuilder,
  type RunOptions,
  type Sink,
  type Source,
  type StateDescriptor,
} from '../../index.ts'

/** An EmbeddedStore on a fresh tmp dir, closed and removed when the test ends. */
function fixture(t: Test): { dir: string; store: EmbeddedStore } {
  const dir = mkdtempSync(join(tmpdir(), 'weir-jobdef-'))
  const store = new EmbeddedStore({ dir })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { dir, store }
}

/** A generator source that counts how often the runtime opened it (once per instance per attempt). */
function countedSource(records: number): { source: Source<GeneratedRecord>; opens: () => number } {
  const inner = generatorSource({ records, keys: 10 })
  let opens = 0
  return {
    source: {
      kind: 'counted',
      open(ctx) {
        opens++
        return inner.open(ctx)
      },
    },
    opens: () => opens,
  }
}

function definitionError(t: Test, fn: () => unknown, message: RegExp, what: string): void {
  t.throws(fn, { name: 'JobDefinitionError', message }, what)
  t.throws(fn, JobDefinitionError, `${what}: a JobDefinitionError`)
}

/** The error `run` rejects (or throws) with; fails the test if it resolves. */
async function failureOf(t: Test, run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    return err
  }
  t.fail('expected a rejection')
  return undefined
}

const nothing: Sink<unknown> = arraySink<unknown>([])

t.test('job definition - a bad job name fails at once', async (t) => {
  for (const name of ['', 'has space', '-leading-dash', 'x'.repeat(129), 'slash/name']) {
    definitionError(t, () => job(name), /job name must match/, JSON.stringify(name))
  }
  definitionError(t, () => job(undefined as unknown as string), /job name must match/, 'undefined name')
  t.equal(job('ok_name-1.2').name, 'ok_name-1.2')
})

t.test('job definition - an unknown job option fails and lists the known ones', async (t) => {
  definitionError(t, () => job('j', { paralelism: 2 } as never), /job j: unknown job option paralelism \(known: maxParallelism, parallelism\)/, 'typo')
  definitionError(t, () => job('j', null as never), /job options must be an object/, 'null options')
})

t.test('job definition - maxParallelism must be an integer from 1 to 32768', async (t) => {
  definitionError(t, () => job('j', { maxParallelism: 0 }), /maxParallelism must be an integer from 1 to 32768, got 0/, '0')
  definitionError(t, () => job('j', { maxParallelism: 1.5 }), /maxParallelism must be an integer from 1 to 32768, got 1\.5/, 'non-integer')
  definitionError(t, () => job('j', { maxParallelism: 32769 }), /got 32769/, 'too large')
  definitionError(t, () => job('j', { maxParallelism: '8' as unknown as number }), /got 8/, 'a string')
  t.equal(job('j').maxParallelism, 128, 'defaults to 128')
})

t.test('job definition - parallelism above maxParallelism fails, for the job and for an operator', async (t) => {
  definitionError(t, () => job('j', { maxParallelism: 4, parallelism: 8 }), /parallelism must be an integer from 1 to 4, got 8/, 'job parallelism')
  definitionError(t, () => job('j', { parallelism: 0 }), /parallelism must be an integer from 1 to 128, got 0/, 'job parallelism 0')
  const j = job('j', { maxParallelism: 4 })
  const keyed = j.source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  definitionError(t, () => keyed.process('count', { parallelism: 5 }, () => {}), /job j: count\.parallelism must be an integer from 1 to 4, got 5/, 'operator parallelism')
  definitionError(t, () => j.source('in2', generatorSource({ records: 1, keys: 1 }), { parallelism: -1 }), /in2\.parallelism must be an integer/, 'source parallelism')
})

t.test('job definition - two operators with the same name fail (names are the ids of state)', async (t) => {
  const j = job('j')
  const s = j.source('a', generatorSource({ records: 1, keys: 1 }))
  definitionError(t, () => s.sink('a', nothing), /two operators are named a; names are the stable ids of state/, 'sink named like the source')
  definitionError(t, () => j.source('a', generatorSource({ records: 1, keys: 1 })), /two operators are named a/, 'two sources')
  definitionError(t, () => s.keyBy((r) => r.key).process('a', {}, () => {}), /two operators are named a/, 'process named like the source')
  definitionError(t, () => s.sink('bad name', nothing), /operator name must match/, 'an operator name with a space')
})

t.test('job definition - a source or sink without open() fails naming the operator', async (t) => {
  const j = job('j')
  definitionError(t, () => j.source('in', {} as Source<unknown>), /job j, operator in: source needs an object with open\(\)/, 'source {}')
  definitionError(t, () => j.source('in', undefined as unknown as Source<unknown>), /source needs an object with open\(\)/, 'no source')
  const s = j.source('in', generatorSource({ records: 1, keys: 1 }))
  definitionError(t, () => s.sink('out', { kind: 'x' } as unknown as Sink<unknown>), /job j, operator out: sink needs an object with open\(\)/, 'sink without open')
})

t.test('job definition - process without a function fails', async (t) => {
  const j = job('j')
  const keyed = j.source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  definitionError(t, () => keyed.process('count', {}, undefined as never), /operator count: process needs a function \(record, ctx\) => void/, 'undefined')
  definitionError(t, () => keyed.process('count2', {}, 'fn' as never), /process needs a function/, 'a string')
  const other = j.source('in2', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  definitionError(t, () => keyed.connect(other).process('both', {}, { first: () => {} } as never), /operator both: process needs a function/, 'connect without second')
  definitionError(t, () => keyed.connect(other).process('both2', {}, undefined as never), /process needs a function/, 'connect without functions')
})

t.test('job definition - a state that is not a descriptor, or two states with one name, fail', async (t) => {
  const j = job('j')
  const keyed = j.source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  definitionError(t, () => keyed.process('p1', { state: { count: 5 as unknown as StateDescriptor } }, () => {}), /operator p1: state\.count is not a state descriptor/, 'a number')
  definitionError(t, () => keyed.process('p2', { state: { count: { name: 'count' } as unknown as StateDescriptor } }, () => {}), /state\.count is not a state descriptor/, 'an object without kind')
  definitionError(t, () => keyed.process('p3', { state: 'count' as never }, () => {}), /state must be an object of state descriptors/, 'a string')
  definitionError(
    t,
    () => keyed.process('p4', { state: { a: valueState<number>('x'), b: listState<number>('x') } }, () => {}),
    /operator p4: two states are named x/,
    'two states named x',
  )
})

t.test('job definition - a job without a source fails on graph() and in runJob', async (t) => {
  definitionError(t, () => job('empty').graph(), /job empty: a job needs at least one source/, 'graph()')
  const { store } = fixture(t)
  await t.rejects(async () => runJob(job('empty'), { store, logLevel: 'silent' }), { name: 'JobDefinitionError', message: /a job needs at least one source/ })
})

t.test('job definition - keyBy, map, filter and flatMap without a function fail', async (t) => {
  const s = job('j').source('in', generatorSource({ records: 1, keys: 1 }))
  definitionError(t, () => s.keyBy(undefined as never), /job j: keyBy needs a key selector function/, 'keyBy')
  definitionError(t, () => s.map(undefined as never), /map needs a function/, 'map')
  definitionError(t, () => s.filter(42 as never), /filter needs a function/, 'filter')
  definitionError(t, () => s.flatMap(null as never), /flatMap needs a function/, 'flatMap')
})

t.test('job definition - streams of two jobs cannot be combined', async (t) => {
  const a = job('a').source('in', generatorSource({ records: 1, keys: 1 }))
  const b = job('b').source('in', generatorSource({ records: 1, keys: 1 }))
  definitionError(t, () => a.union(b), /union of streams from different jobs/, 'union')
  definitionError(t, () => a.keyBy((r) => r.key).connect(b.keyBy((r) => r.key)), /connect of streams from different jobs/, 'connect')
})

t.test('job definition - connectors check their options when declared', async (t) => {
  definitionError(t, () => generatorSource({ records: -1, keys: 1 }), /generatorSource: records must be a non-negative integer, got -1/, 'records')
  definitionError(t, () => generatorSource({ records: 1, keys: 0 }), /generatorSource: keys must be a positive integer, got 0/, 'keys')
  definitionError(t, () => generatorSource({ records: 1, keys: 1, ratePerSecond: 0 }), /ratePerSecond must be a positive number/, 'rate')
  definitionError(t, () => ndjsonSource({ path: '' }), /ndjsonSource needs \{ path \}/, 'ndjson path')
  definitionError(t, () => fileSink({ path: '' }), /fileSink needs \{ path \}/, 'file path')
  definitionError(t, () => arraySink('x' as unknown as unknown[]), /arraySink needs an array/, 'array')
  definitionError(t, () => fileSink({ path: 'x', format: 'json' as never }), /sink format must be a function/, 'format')
})

t.test('job definition - an unknown operator option fails at once instead of being ignored', async (t) => {
  // A typo in an operator option silently ran with the default parallelism.
  const j = job('j', { maxParallelism: 8 })
  const keyed = j.source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  t.throws(() => keyed.process('count', { paralelism: 4 } as never, () => {}), { name: 'JobDefinitionError', message: /paralelism/ }, 'process option typo')
  t.throws(() => keyed.process('count2', { states: { c: valueState<number>('c') } } as never, () => {}), { name: 'JobDefinitionError', message: /states/ }, 'state option typo')
})

function keyedJob(name: string, source: Source<GeneratedRecord>, keyOf: (r: GeneratedRecord) => unknown, fn: (r: GeneratedRecord, ctx: { state: (d: StateDescriptor) => unknown }) => void = () => {}): JobBuilder {
  const declared = valueState<number>('declared', { default: 0 })
  const j = job(name)
  j.source('in', source)
    .keyBy(keyOf as (r: GeneratedRecord) => string)
    .process('count', { state: { declared } }, fn)
    .sink('out', arraySink<unknown>([]))
  return j
}

t.test('job definition - a key selector returning an object fails the run with KeySelectorError, without restarts', async (t) => {
  const { store } = fixture(t)
  const { source, opens } = countedSource(100)
  const err = await failureOf(t, () => runJob(keyedJob('bad-key', source, (r) => ({ id: r.key })), { store, logLevel: 'silent' }))
  t.type(err, KeySelectorError)
  const e = err as KeySelectorError
  t.equal(e.retryable, false)
  t.equal(e.operator, 'count')
  t.match(e.key, { id: /^k\d+$/ }, 'the error carries the bad key')
  t.match(e.message, /keyBy into count: the key selector returned \{"id":"k\d+"\} \(object\); keys must be strings, finite numbers or bigints/)
  t.equal(opens(), 1, 'one attempt: the default restart strategy was not used')
})

t.test('job definition - key selectors returning undefined, null, NaN or Infinity fail with KeySelectorError', async (t) => {
  const { store } = fixture(t)
  for (const [i, bad] of [undefined, null, NaN, Infinity, true].entries()) {
    await t.rejects(async () => runJob(keyedJob(`bad-key-${i}`, generatorSource({ records: 5, keys: 1 }), () => bad), { store, logLevel: 'silent' }), {
      name: 'KeySelectorError',
      message: new RegExp(`returned ${String(bad)} \\(${typeof bad}\\)`),
    })
  }
})

t.test('job definition - ctx.state() of an undeclared descriptor fails the run, telling to declare it', async (t) => {
  const { store } = fixture(t)
  const undeclared = valueState<number>('forgotten')
  const { source, opens } = countedSource(10)
  await t.rejects(
    async () => runJob(keyedJob('undeclared', source, (r) => r.key, (_r, ctx) => ctx.state(undeclared)), { store, logLevel: 'silent' }),
    { name: 'JobDefinitionError', message: /operator count: ctx\.state\(forgotten\): declare the state in process\('count', \{ state: \{ \.\.\. \} \}\)/ },
  )
  t.equal(opens(), 1, 'a definition error is not retried')
})

t.test('run options - an unknown runJob option fails with UnknownOptionError before anything runs', async (t) => {
  const { store } = fixture(t)
  const { source, opens } = countedSource(10)
  const err = await failureOf(t, () => runJob(keyedJob('opts', source, (r) => r.key), { store, logLevel: 'silent', chekpoints: { intervalMs: 10 } } as RunOptions))
  t.type(err, UnknownOptionError)
  t.equal((err as UnknownOptionError).option, 'chekpoints')
  t.match((err as Error).message, /unknown option chekpoints; known options: store, checkpoints/)
  t.equal(opens(), 0, 'no source was opened')
})

t.test('run options - bad checkpoint options name checkpoints.<option>', async (t) => {
  const { store } = fixture(t)
  const cases: [unknown, typeof InvalidOptionError | typeof UnknownOptionError, string, RegExp][] = [
    [{ intervalMs: -1 }, InvalidOptionError, 'checkpoints.intervalMs', /option checkpoints\.intervalMs: expected an integer number of milliseconds from 1 to 2147483647 .*, got -1$/],
    [{ intervalMs: 0 }, InvalidOptionError, 'checkpoints.intervalMs', /got 0/],
    [{}, InvalidOptionError, 'checkpoints.intervalMs', /got undefined/],
    [{ intervalMs: 10, mode: 'twice' }, InvalidOptionError, 'checkpoints.mode', /option checkpoints\.mode: expected 'exactly-once' or 'at-least-once', got "twice"/],
    [{ intervalMs: 10, every: 5 }, UnknownOptionError, 'checkpoints.every', /unknown option checkpoints\.every/],
    [{ intervalMs: 10, timeoutMs: 1.5 }, InvalidOptionError, 'checkpoints.timeoutMs', /checkpoints\.timeoutMs/],
    [{ intervalMs: 10, retained: 0 }, InvalidOptionError, 'checkpoints.retained', /checkpoints\.retained/],
    [5, InvalidOptionError, 'checkpoints', /expected an object or false/],
  ]
  for (const [checkpoints, type, option, message] of cases) {
    const { source, opens } = countedSource(10)
    const err = await failureOf(t, () => runJob(keyedJob('ckpt-opts', source, (r) => r.key), { store, logLevel: 'silent', checkpoints: checkpoints as CheckpointOptions }))
    t.type(err, type, `${JSON.stringify(checkpoints)}: ${type.name}`)
    t.equal((err as InvalidOptionError).option, option)
    t.match((err as Error).message, message)
    t.equal((err as { retryable?: boolean }).retryable, false)
    t.equal(opens(), 0, `${JSON.stringify(checkpoints)}: nothing ran`)
  }
})

t.test('run options - bad restore and tuning options fail with InvalidOptionError', async (t) => {
  const { store } = fixture(t)
  const j = keyedJob('other-opts', generatorSource({ records: 1, keys: 1 }), (r) => r.key)
  await t.rejects(async () => runJob(j, { store, logLevel: 'silent', restore: 0 }), { name: 'InvalidOptionError', option: 'restore' })
  await t.rejects(async () => runJob(j, { store, logLevel: 'silent', restore: 'newest' as never }), { name: 'InvalidOptionError', option: 'restore' })
  await t.rejects(async () => runJob(j, { store, logLevel: 'silent', tuning: { batchSize: 0 } }), { name: 'InvalidOptionError', option: 'tuning.batchSize' })
})
