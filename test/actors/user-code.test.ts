/**
 * The contract of user code, as a user meets it: async functions are refused, a returned promise
 * fails the job (and never crashes the process), and errors thrown by user code keep the user's
 * file and line and blame the right operator, whatever was thrown.
 */
import t, { type Test } from 'tap'
import { setup } from 'xstate'
import {
  arraySink,
  AsyncUserCodeError,
  createLogger,
  EmbeddedStore,
  generatorSource,
  job,
  JobDefinitionError,
  JobFailedError,
  runJob,
  UserCodeError,
  valueState,
  aggregatingState,
  boundedOutOfOrderness,
  ndjsonSource,
  operatorListState,
  reducingState,
  stdoutSink,
  tumblingEventTimeWindows,
  type RunOptions,
} from '../../index.ts'
import { failure } from '../support/expect.ts'
import { tempEmbeddedStore } from '../support/stores.ts'

function fixture(t: Test): EmbeddedStore {
  return tempEmbeddedStore(t, 'weir-usercode-')
}

const count = valueState<number>('count', { default: 0 })
const once: Partial<RunOptions> = { restart: { type: 'none' }, logLevel: 'silent', strictState: true }

t.test('async - async process functions, transforms and key selectors are refused when the job is defined', async (t) => {
  const s = job('j').source('in', generatorSource({ records: 1, keys: 1 }))
  const keyed = s.keyBy((r) => r.key)
  const why = /is an async function; per-record work is synchronous .* do async work in a source or a sink/
  t.throws(() => keyed.process('count', {}, async () => {}), { name: 'JobDefinitionError', message: /^job j, operator count: the process function is an async function/ })
  t.throws(() => keyed.process('count', {}, async () => {}), { message: why })
  t.throws(() => s.map(async (r) => r), { name: 'JobDefinitionError', message: /^job j, operator map-\d+: the map function is an async function/ })
  t.throws(() => s.filter((async () => true) as never), { name: 'JobDefinitionError', message: /the filter function is an async function/ })
  t.throws(() => s.flatMap(async () => {}), { name: 'JobDefinitionError', message: /the flatMap function is an async function/ })
  t.throws(() => s.flatMap(async function* () {} as never), { name: 'JobDefinitionError', message: /the flatMap function is an async function/ }, 'async generator')
  t.throws(() => s.keyBy((async (r: { key: string }) => r.key) as never), { name: 'JobDefinitionError', message: /^job j: the key selector of keyBy is an async function/ })
  const other = job('j').source('in2', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  t.throws(() => keyed.connect(other).process('both', {}, { first: () => {}, second: async () => {} }), JobDefinitionError, 'either function of a connected process')
  t.doesNotThrow(() => keyed.process('sync', {}, () => {}), 'a plain function is fine')
})

t.test('async - every other function the runtime calls synchronously is refused when it is given, with the same error', async (t) => {
  const why = /is an async function; per-record work is synchronous \(state would change after the next record's key is set\), so make it synchronous and do async work in a source or a sink$/
  const refused = (what: string, f: () => unknown, message: RegExp) => {
    t.throws(f, { name: 'JobDefinitionError', message }, what)
    t.throws(f, { message: why }, `${what}: says why and what to do`)
  }
  const sum = { createAccumulator: () => 0, add: (a: number, v: number) => a + v, getResult: (a: number) => a }
  const serde = { encode: (v: unknown) => new Uint8Array([Number(v)]), decode: (b: Uint8Array) => b[0] }
  // State descriptors are made before the job, so the error names the state.
  refused('reducingState', () => reducingState<number>('max', (async (a: number, b: number) => Math.max(a, b)) as never), /^state max: the reduce function is an async function/)
  for (const fn of ['createAccumulator', 'add', 'getResult'] as const) {
    refused(`aggregatingState ${fn}`, () => aggregatingState('sum', { ...sum, [fn]: async () => 0 } as never), new RegExp(`^state sum: ${fn} is an async function`))
  }
  for (const fn of ['encode', 'decode'] as const) {
    refused(`a state serde's ${fn}`, () => valueState('v', { serde: { ...serde, [fn]: async () => 0 } as never }), new RegExp(`^state v: serde.${fn} is an async function`))
    refused(`an operator state serde's ${fn}`, () => operatorListState('o', { serde: { ...serde, [fn]: async () => 0 } as never }), new RegExp(`^operator state o: serde.${fn} is an async function`))
  }
  refused('a watermark timestamp', () => boundedOutOfOrderness({ timestamp: (async () => 0) as never, maxOutOfOrdernessMs: 0 }), /^boundedOutOfOrderness: timestamp is an async function/)
  refused('a sink format', () => stdoutSink({ format: (async () => '') as never }), /^the sink format is an async function/)
  refused('an ndjson onBadLine', () => ndjsonSource({ path: 'x', onBadLine: async () => {} }), /^ndjsonSource: onBadLine is an async function/)

  // Functions given to the job name the job and the operator.
  const keyed = () => job('j').source('in', generatorSource({ records: 1, keys: 1 })).keyBy((r) => r.key)
  refused('onTimer', () => keyed().process('p', { onTimer: async () => {} }, () => {}), /^job j, operator p: onTimer is an async function/)
  refused('a window reduce', () => keyed().window(tumblingEventTimeWindows(1000)).reduce('w', (async (a: unknown) => a) as never), /^job j, operator w: a window function is an async function/)
  refused('a window aggregate merge', () => keyed().window(tumblingEventTimeWindows(1000)).aggregate('w', { ...sum, add: (a: number) => a, merge: async () => 0 } as never), /^job j, operator w: a window function is an async function/)
  refused('a window result', () => keyed().window(tumblingEventTimeWindows(1000)).reduce('w', (a) => a, { result: (async () => 0) as never }), /^job j, operator w: a window function is an async function/)
  const machine = setup({}).createMachine({ id: 'm' })
  for (const option of ['event', 'output', 'input', 'migrate'] as const) {
    refused(`the machine's ${option}`, () => keyed().machine('m', machine, { [option]: async () => ({ type: 'x' }) } as never), /^job j, operator m: (the \w+ function|migrate) is an async function/)
  }
  t.doesNotThrow(() => reducingState<number>('max', (a, b) => Math.max(a, b)), 'a plain function is fine')
})

t.test('async - a process function returning a promise fails the job at once with AsyncUserCodeError naming operator and key', async (t) => {
  const store = fixture(t)
  let calls = 0
  const j = job('returns-promise')
  j.source('in', generatorSource({ records: 100, keys: 3 }))
    .keyBy((r) => r.key)
    // Not `async`, so definition cannot see it: it returns a promise that rejects.
    .process('count', { state: { count } }, () => {
      calls++
      return Promise.reject(new Error('late')) as unknown as void
    })
    .sink('out', arraySink([]))
  const err = await failure(runJob(j, { store, ...once, restart: { type: 'fixed-delay', attempts: 3, delayMs: 1 } }))
  t.type(err, AsyncUserCodeError, 'terminal, not JobFailedError after restarts')
  t.equal((err as AsyncUserCodeError).retryable, false)
  t.equal((err as AsyncUserCodeError).operator, 'count')
  t.match((err as AsyncUserCodeError).key, /^k\d$/)
  t.match(err.message, /^operator count\[0\] key "k\d": user code returned a promise; per-record work is synchronous \(make the function synchronous and do async work in a source or a sink\)$/)
  t.equal(calls, 1, 'stopped at the first record')
  // The rejected promise was handled: had it not been, the process would have ended here.
  await new Promise((r) => setTimeout(r, 20))
})

t.test('async - a map returning a promise and a key selector returning a promise name the transform and keyBy', async (t) => {
  const store = fixture(t)
  const viaMap = job('map-promise')
  viaMap
    .source('in', generatorSource({ records: 10, keys: 2 }))
    .map((r) => Promise.resolve(r), 'enrich')
    .sink('out', arraySink([]))
  const e1 = await failure(runJob(viaMap, { store, ...once }))
  t.type(e1, AsyncUserCodeError)
  t.equal(e1.message, 'operator enrich[0]: user code returned a promise; per-record work is synchronous (make the function synchronous and do async work in a source or a sink)')

  const viaKey = job('key-promise')
  viaKey
    .source('in', generatorSource({ records: 10, keys: 2 }))
    .keyBy((r) => Promise.reject(new Error(r.key)) as never)
    .process('count', {}, () => {})
  const e2 = await failure(runJob(viaKey, { store, ...once }))
  t.type(e2, AsyncUserCodeError)
  t.match(e2.message, /^operator keyBy into count\[0\]: user code returned a promise/)
  await new Promise((r) => setTimeout(r, 20))
})

t.test('user errors - a UserCodeError keeps the file and line of the throw in its stack, its location and the log line', async (t) => {
  const store = fixture(t)
  const lines: string[] = []
  const j = job('user-stack')
  j.source('in', generatorSource({ records: 10, keys: 2 }))
    .keyBy((r) => r.key)
    .process('count', {}, () => {
      throw new TypeError('bad record')
    })
  const err = await failure(runJob(j, { store, ...once, logger: createLogger({ level: 'error', write: (l) => lines.push(l) }) }))
  t.type(err, JobFailedError, "restarts are off ('none')")
  t.type(err.cause, UserCodeError)
  const e = err.cause as UserCodeError
  t.match(e.message, /^operator count\[0\] key "k\d": user code threw: bad record$/)
  t.type(e.cause, TypeError, 'the cause is what was thrown')
  t.match(e.location, /user-code\.test\.ts:\d+:\d+$/, 'location: the file and line of the throw')
  t.match(e.stack, /^UserCodeError: operator count\[0\]/, 'the stack starts with the error')
  t.match(e.stack, /\n\s+at .*user-code\.test\.ts:\d+:\d+/, 'and shows the user frame')
  const line = lines.find((l) => l.includes('attempt failed'))
  t.match(line, /at=\S*user-code\.test\.ts:\d+:\d+/, 'the log line names the file and line')
})

t.test('user errors - thrown strings, objects, null and symbols are described readably; nothing is retried wrongly', async (t) => {
  const store = fixture(t)
  const cases: [unknown, RegExp][] = [
    ['plain string', /user code threw: plain string$/],
    [{ code: 42 }, /user code threw: a thrown non-Error object \{"code":42\}$/],
    [null, /user code threw: a thrown null \(null\)$/],
    [undefined, /user code threw: a thrown undefined \(undefined\)$/],
    [Symbol('boom'), /user code threw: a thrown symbol \(Symbol\(boom\)\)$/],
    [42n, /user code threw: a thrown bigint \(42\)$/],
  ]
  for (const [i, [thrown, message]] of cases.entries()) {
    const j = job(`throws-${i}`)
    j.source('in', generatorSource({ records: 5, keys: 1 }))
      .keyBy((r) => r.key)
      .process('count', {}, () => {
        throw thrown
      })
    const err = await failure(runJob(j, { store, ...once }))
    t.type(err, JobFailedError, `${String(thrown)}: the strategy 'none' gave up`)
    t.type(err.cause, UserCodeError)
    t.match((err.cause as Error).message, message)
    t.equal((err.cause as UserCodeError).location, undefined, 'no stack, no location')
  }
})

t.test('user errors - keys that print badly still give a clear error that blames the operator of the throw', async (t) => {
  const store = fixture(t)
  const bigKey = job('bigint-key')
  bigKey
    .source('in', generatorSource({ records: 5, keys: 1 }))
    .keyBy(() => 12345678901234567890n)
    .process('count', {}, () => {
      throw new Error('no')
    })
  const e1 = await failure(runJob(bigKey, { store, ...once }))
  t.equal((e1.cause as Error).message, 'operator count[0] key 12345678901234567890n: user code threw: no')

  // A key selector that throws an object whose toString throws: blamed on keyBy, not on the source.
  const evil = { toString: () => { throw new Error('no toString') } }
  const badSelector = job('bad-selector')
  badSelector
    .source('in', generatorSource({ records: 5, keys: 1 }))
    .keyBy(() => {
      throw evil
    })
    .process('count', {}, () => {})
  const e2 = await failure(runJob(badSelector, { store, ...once }))
  t.type(e2.cause, UserCodeError)
  t.match((e2.cause as Error).message, /^operator keyBy into count\[0\]: user code threw: a thrown non-Error object \{\}$/)

  // A map after a keyed process that throws is blamed on the map, with the process's instance.
  const afterProcess = job('map-after')
  afterProcess
    .source('in', generatorSource({ records: 5, keys: 1 }))
    .keyBy((r) => r.key)
    .process('count', {}, (r, ctx) => ctx.emit(r))
    .map(() => {
      throw new RangeError('map broke')
    }, 'shape')
    .sink('out', arraySink([]))
  const e3 = await failure(runJob(afterProcess, { store, ...once }))
  t.equal((e3.cause as Error).message, 'operator shape[0]: user code threw: map broke')
})
