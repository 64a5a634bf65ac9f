/**
 * What user code keeps in state, as a user meets it: values the default serde cannot round-trip
 * fail the first checkpoint that writes them, naming operator, state, key and type; strict mode
 * makes a change in place throw where it is made.
 */
import t, { type Test } from 'tap'
import { HeapKeyedBackend } from '../../actors/state/heap-backend.ts'
import { unserializableIn } from '../../actors/state/checks.ts'
import {
  EmbeddedStore,
  generatorSource,
  job,
  JobFailedError,
  listState,
  mapState,
  runJob,
  UnserializableStateError,
  UserCodeError,
  valueState,
  type Serde,
  type StateDescriptor,
} from '../../index.ts'
import { failure } from '../support/expect.ts'
import { tempEmbeddedStore } from '../support/stores.ts'

function fixture(t: Test): EmbeddedStore {
  return tempEmbeddedStore(t, 'weir-statecontract-')
}

class Counter {
  n = 0
  add(): void {
    this.n++
  }
}

/** A job whose state holds what `make` returns for key k1 (plain numbers for the others). */
function holding(name: string, state: StateDescriptor, make: () => unknown) {
  const j = job(name)
  // Slow enough that checkpoints are taken while it runs.
  j.source('in', generatorSource({ records: 5000, keys: 5, ratePerSecond: 10_000 }))
    .keyBy((r) => r.key)
    .process('count', { state: { state } }, (r, ctx) => {
      ;(ctx.state(state as never) as { update(v: unknown): void }).update(r.key === 'k1' ? make() : r.value)
    })
  return j
}

t.test('serde - a class instance in state fails the first checkpoint with UnserializableStateError, no snapshot completes', async (t) => {
  const store = fixture(t)
  const counter = valueState<unknown>('counter')
  const err = await failure(runJob(holding('class-in-state', counter, () => new Counter()), { store, checkpoints: { intervalMs: 5 }, restart: { type: 'fixed-delay', attempts: 3, delayMs: 1 }, logLevel: 'silent', strictState: true }))
  t.type(err, UnserializableStateError, 'terminal: no restart would help')
  const e = err as UnserializableStateError
  t.equal(e.operator, 'count')
  t.equal(e.state, 'counter')
  t.equal(e.key, 'k1')
  t.equal(e.valueType, 'an instance of class Counter')
  t.equal(
    e.message,
    'operator count, state counter, key "k1": the value holds an instance of class Counter, which the default serde (CBOR) cannot write and read back; ' +
      'give the state a serde ({ serde: { encode, decode } }) or keep plain data in it (objects, arrays, Maps, Sets, Dates, bigints, typed arrays)',
  )
  t.equal(await store.latestCompleted('class-in-state'), undefined, 'nothing was completed that a restart would fail to use')
})

t.test('serde - functions, symbols and cycles name what they are and where', async (t) => {
  const store = fixture(t)
  const v = valueState<unknown>('v')
  const cyclic = () => {
    const o: Record<string, unknown> = { name: 'a' }
    o.self = o
    return o
  }
  const cases: [string, () => unknown, string][] = [
    ['fn', () => ({ onClick: () => 1 }), 'a function at .onClick'],
    ['sym', () => [1, Symbol('s')], 'a symbol at [1]'],
    ['cycle', cyclic, 'a cycle at .self'],
    ['deep-class', () => new Map([['a', { when: new Date(0), c: new Counter() }]]), 'an instance of class Counter at .get("a").c'],
  ]
  for (const [name, make, what] of cases) {
    const err = await failure(runJob(holding(`bad-${name}`, v, make), { store, checkpoints: { intervalMs: 5 }, restart: { type: 'none' }, logLevel: 'silent' }))
    t.type(err, UnserializableStateError, name)
    t.equal((err as UnserializableStateError).valueType, what, name)
  }
})

t.test('serde - plain data passes, and a state with its own serde is not checked', async (t) => {
  t.equal(unserializableIn({ a: [1, 'x', null, true, 2n, new Date(0), new Uint8Array(2), new Map([[1, new Set([1])]]), Object.create(null)] }), undefined)
  const store = fixture(t)
  const asText: Serde<unknown> = {
    encode: (c) => new TextEncoder().encode(String((c as Counter).n ?? c)),
    decode: (b) => Number(new TextDecoder().decode(b)),
  }
  const counter = valueState<unknown>('counter', { serde: asText })
  const result = await runJob(holding('own-serde', counter, () => new Counter()), { store, checkpoints: { intervalMs: 5 }, restart: { type: 'none' }, logLevel: 'silent' })
  t.equal(result.status, 'finished')
  t.ok(result.lastCheckpoint !== undefined, 'the final checkpoint completed')
})

t.test('serde - later snapshots of an attempt still check the first value of each key group', async (t) => {
  const v = valueState<unknown>('v')
  const b = new HeapKeyedBackend([v], { start: 0, end: 0 }, { operator: 'op' })
  const h = b.handle(v) as { update(x: unknown): void }
  b.setCurrentKey('a', 0)
  h.update(1)
  b.startSnapshot()
  b.serializeSome(Infinity)
  h.update(new Counter())
  b.startSnapshot()
  t.throws(() => b.serializeSome(Infinity), { name: 'UnserializableStateError', operator: 'op', state: 'v', key: 'a' })
})

t.test('strict mode - changing a value, a list or a map value in place throws a TypeError where it is done', async (t) => {
  const store = fixture(t)
  const profile = valueState<{ visits: number; tags: string[] }>('profile', { default: { visits: 0, tags: [] } })
  const seen = listState<number>('seen')
  const byDay = mapState<string, { n: number }>('by-day')
  const run = async (name: string, mistake: (s: { profile: { value(): { visits: number; tags: string[] }; update(v: { visits: number; tags: string[] }): void }; seen: { get(): readonly number[]; add(v: number): void }; byDay: { get(k: string): { n: number } | undefined; put(k: string, v: { n: number }): void; values(): IterableIterator<{ n: number }> } }) => void) => {
    const j = job(name)
    j.source('in', generatorSource({ records: 20, keys: 2 }))
      .keyBy((r) => r.key)
      .process('count', { state: { profile, seen, byDay } }, (r, ctx) => {
        const s = { profile: ctx.state(profile), seen: ctx.state(seen), byDay: ctx.state(byDay) }
        s.profile.update({ visits: s.profile.value().visits + 1, tags: [...s.profile.value().tags, 't'] })
        s.seen.add(r.seq)
        s.byDay.put('mon', { n: (s.byDay.get('mon')?.n ?? 0) + 1 })
        if (r.seq >= 4) mistake(s)
      })
    return await failure(runJob(j, { store, restart: { type: 'none' }, logLevel: 'silent', strictState: true }))
  }
  const cases: [string, Parameters<typeof run>[1]][] = [
    ['value field', (s) => void (s.profile.value().visits += 1)],
    ['value nested array', (s) => void s.profile.value().tags.push('x')],
    ['list push', (s) => void (s.seen.get() as number[]).push(1)],
    ['map value', (s) => void (s.byDay.get('mon')!.n = 9)],
    ['map values()', (s) => void ([...s.byDay.values()][0]!.n = 9)],
  ]
  for (const [what, mistake] of cases) {
    const err = await run(`strict-${what.replace(/\W/g, '-')}`, mistake)
    t.type(err, JobFailedError, what)
    t.type(err.cause, UserCodeError, what)
    t.type((err.cause as Error).cause, TypeError, `${what}: a TypeError`)
    t.match((err.cause as UserCodeError).location, /state-contract\.test\.ts:\d+:\d+$/, `${what}: thrown at the line of the mistake`)
  }
  // Without strict mode (off explicitly: the test suite turns it on for every job) the same
  // mistake goes unnoticed: the option is what catches it.
  // (A fresh descriptor: strict mode froze the default value of the first one, as it should.)
  const lenientProfile = valueState<{ visits: number }>('profile', { default: { visits: 0 } })
  const j = job('lenient')
  j.source('in', generatorSource({ records: 20, keys: 2 }))
    .keyBy((r) => r.key)
    .process('count', { state: { lenientProfile } }, (_r, ctx) => void (ctx.state(lenientProfile).value().visits += 1))
  t.equal((await runJob(j, { store, restart: { type: 'none' }, logLevel: 'silent', strictState: false })).status, 'finished')
})

t.test('strict mode - values written back with update/add/put still work, and state ends exact', async (t) => {
  const store = fixture(t)
  const seen = listState<number>('seen')
  const tags = valueState<Map<string, number>>('tags', { default: new Map() })
  const j = job('strict-ok')
  j.source('in', generatorSource({ records: 200, keys: 4 }))
    .keyBy((r) => r.key)
    .process('count', { state: { seen, tags } }, (r, ctx) => {
      const s = ctx.state(seen)
      s.add(r.seq)
      s.addAll([])
      const m = new Map(ctx.state(tags).value())
      m.set('n', (m.get('n') ?? 0) + 1)
      ctx.state(tags).update(m)
    })
  const result = await runJob(j, { store, checkpoints: { intervalMs: 5 }, restart: { type: 'none' }, logLevel: 'silent', strictState: true })
  t.equal(result.status, 'finished')
  const { readSnapshotState } = await import('../../index.ts')
  const got = await readSnapshotState(store, 'strict-ok', 'count', 'seen')
  t.equal([...got.values()].reduce((n: number, l) => n + (l as number[]).length, 0), 200, 'every record appended once')
  const counts = await readSnapshotState(store, 'strict-ok', 'count', 'tags')
  t.equal([...counts.values()].reduce((n: number, m) => n + (m as Map<string, number>).get('n')!, 0), 200)
})

t.test('serde - a job that ends before its first checkpoint fails its final one at once, naming the value', async (t) => {
  const store = fixture(t)
  const v = valueState<unknown>('v')
  const j = job('final-only')
  j.source('in', generatorSource({ records: 20, keys: 2 }))
    .keyBy((r) => r.key)
    .process('count', { state: { v } }, (_r, ctx) => ctx.state(v).update(new Counter()))
  const began = Date.now()
  // The interval is never reached: only the final checkpoint writes the state.
  // Restarts are allowed: a value the serde cannot write fails the job at once all the same.
  const err = await failure(runJob(j, { store, checkpoints: { intervalMs: 600_000 }, restart: { type: 'fixed-delay', attempts: 3, delayMs: 10 }, logLevel: 'silent' }))
  t.ok(Date.now() - began < 10_000, 'without waiting for the checkpoint timeout (60 s)')
  t.ok(err instanceof UnserializableStateError, `the job fails with UnserializableStateError itself, not a retried checkpoint failure (${err.name})`)
  const chain: unknown[] = []
  for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(e)
  t.ok(chain.some((e) => e instanceof UnserializableStateError), 'UnserializableStateError is in the cause chain')
  t.match(err.message, /operator count, state v, key "k\d": the value holds an instance of class Counter/)
  t.equal(await store.latestCompleted('final-only'), undefined, 'no snapshot completed')
})
