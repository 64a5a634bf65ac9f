import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import {
  aggregatingState,
  EmbeddedStore,
  arraySink,
  generatedRecord,
  generatorSource,
  InvalidOptionError,
  job,
  JobDefinitionError,
  listState,
  mapState,
  readSnapshotState,
  reducingState,
  runJob,
  valueState,
  type Clock,
  type GeneratedRecord,
  type GeneratorOptions,
  type RunOptions,
  type Serde,
  type SnapshotStore,
  type StateDescriptor,
  type StateHandle,
} from '../../index.ts'
import { HeapKeyedBackend, type KeyedSnapshot } from '../../actors/state/heap-backend.ts'
import type { Key, KeyGroupRange } from '../../actors/state/key-groups.ts'
import { decodeKeyedChunk, encodeKeyedChunk } from '../../persistence/keyed-chunk.ts'
import { failure } from '../support/expect.ts'
import { tempEmbeddedStore } from '../support/stores.ts'
import { RESTORE_OFF, faultTest } from '../support/controls.ts'
import { recordsLeftAfter } from '../support/kill-runs.ts'

const RANGE: KeyGroupRange = { start: 0, end: 7 }

/** A clock the test moves by hand. */
class FakeClock implements Clock {
  constructor(public time = 0) {}
  now(): number {
    return this.time
  }
}

function backendOf(descriptors: StateDescriptor[], clock: Clock, strictState = false): HeapKeyedBackend {
  return new HeapKeyedBackend(descriptors, RANGE, { clock, strictState })
}

function handle<D extends StateDescriptor>(backend: HeapKeyedBackend, descriptor: D): StateHandle<D> {
  const h = backend.handle(descriptor)
  if (h === undefined) throw new Error(`state ${descriptor.name} is not declared`)
  return h as StateHandle<D>
}

/** Keys spread over the range's key groups (the group is the key's number mod 8). */
function at(backend: HeapKeyedBackend, key: string): void {
  backend.setCurrentKey(key, Number(/\d+/.exec(key)?.[0] ?? 0) % 8)
}

function snapshotNow(backend: HeapKeyedBackend): KeyedSnapshot {
  const s = backend.startSnapshot()
  backend.serializeSome(Infinity)
  return s
}

function restoreInto(backend: HeapKeyedBackend, snapshot: KeyedSnapshot): HeapKeyedBackend {
  for (const g of snapshot.groups) backend.restoreGroup(g.keyGroup, g.data)
  return backend
}

/** Every state of a snapshot as written: name -> { ttlMs, entries by key }. */
function chunkContents(snapshot: KeyedSnapshot): Map<string, { ttlMs: number | undefined; entries: Map<Key, unknown> }> {
  const out = new Map<string, { ttlMs: number | undefined; entries: Map<Key, unknown> }>()
  for (const g of snapshot.groups) {
    for (const s of decodeKeyedChunk(g.data)) {
      const state = out.get(s.name) ?? { ttlMs: s.ttlMs, entries: new Map<Key, unknown>() }
      out.set(s.name, state)
      for (let i = 0; i < s.entries.length; i += 2) state.entries.set(s.entries[i] as Key, s.entries[i + 1])
    }
  }
  return out
}

const json: Serde<unknown> = {
  encode: (v) => new TextEncoder().encode(JSON.stringify(v)),
  decode: (b) => JSON.parse(new TextDecoder().decode(b)) as unknown,
}

t.test('ttl - value state: returned until ttlMs after the write, then the default, and the key is gone', async (t) => {
  const clock = new FakeClock(1000)
  const last = valueState<string>('last', { default: 'none', ttl: { ttlMs: 100 } })
  const b = backendOf([last], clock)
  at(b, 'k1')
  const h = handle(b, last)
  h.update('a')
  clock.time = 1099
  t.equal(h.value(), 'a', 'alive 1 ms before ttlMs')
  t.equal(h.value(), 'a', 'a read does not refresh under on-create-and-write...')
  clock.time = 1100
  t.equal(h.value(), 'none', '...so it expires ttlMs after the write (ts + ttl <= now)')
  t.equal(b.keyCount(), 0, 'the expired value was removed when read')
  h.update('b')
  clock.time = 1150
  h.update('c')
  clock.time = 1249
  t.equal(h.value(), 'c', 'a write refreshes the time')
  h.clear()
  t.equal(h.value(), 'none')
})

t.test('ttl - list state expires element by element', async (t) => {
  const clock = new FakeClock(0)
  const events = listState<string>('events', { ttl: { ttlMs: 100 } })
  const b = backendOf([events], clock)
  at(b, 'k1')
  const h = handle(b, events)
  h.add('a')
  clock.time = 50
  h.addAll(['b', 'c'])
  clock.time = 99
  t.same(h.get(), ['a', 'b', 'c'])
  clock.time = 100
  t.same(h.get(), ['b', 'c'], 'the element added at 0 expired, those added at 50 did not')
  t.same([...b.entries('events')].map(([, v]) => (v as { value: unknown }[]).map((e) => e.value)), [['b', 'c']], 'and it is gone from the store')
  clock.time = 150
  t.same(h.get(), [])
  t.equal(b.keyCount(), 0)
  h.update(['x', 'y'])
  clock.time = 249
  t.same(h.get(), ['x', 'y'])
  h.update([])
  t.same(h.get(), [])
})

t.test('ttl - map state expires entry by entry', async (t) => {
  const clock = new FakeClock(0)
  const seen = mapState<string, number>('seen', { ttl: { ttlMs: 100 } })
  const b = backendOf([seen], clock)
  at(b, 'k1')
  const h = handle(b, seen)
  h.put('x', 1)
  clock.time = 50
  h.putAll([['y', 2], ['z', 3]])
  clock.time = 100
  t.equal(h.get('x'), undefined, 'x expired')
  t.equal(h.contains('x'), false)
  t.equal(h.get('y'), 2)
  t.equal(h.contains('z'), true)
  t.same([...h.entries()], [['y', 2], ['z', 3]])
  t.same([...h.keys()], ['y', 'z'])
  t.same([...h.values()], [2, 3])
  t.equal(h.isEmpty(), false)
  clock.time = 140
  h.put('y', 20)
  clock.time = 150
  t.same([...h.entries()], [['y', 20]], 'z expired at 150; y was written again at 140')
  h.remove('y')
  t.equal(h.isEmpty(), true)
  t.equal(b.keyCount(), 0, 'removing the last live entry removes the key')
  h.put('w', 1)
  clock.time = 1000
  t.equal(h.isEmpty(), true, 'isEmpty sees only live entries')
  t.equal(b.keyCount(), 0)
})

t.test('ttl - reducing and aggregating state: an add refreshes; an expired value starts over', async (t) => {
  const clock = new FakeClock(0)
  const sum = reducingState<number>('sum', (a, b) => a + b, { ttl: { ttlMs: 100 } })
  const avg = aggregatingState(
    'avg',
    { createAccumulator: () => ({ s: 0, n: 0 }), add: (a, v: number) => ({ s: a.s + v, n: a.n + 1 }), getResult: (a) => a.s / a.n },
    { ttl: { ttlMs: 100 } },
  )
  const b = backendOf([sum, avg], clock)
  at(b, 'k3')
  const s = handle(b, sum)
  const a = handle(b, avg)
  s.add(1)
  a.add(2)
  clock.time = 60
  s.add(2)
  a.add(4)
  clock.time = 159
  t.equal(s.get(), 3)
  t.equal(a.get(), 3)
  clock.time = 160
  t.equal(s.get(), undefined)
  t.equal(a.get(), undefined)
  s.add(10)
  a.add(10)
  t.equal(s.get(), 10, 'an add after expiry does not fold into the expired value')
  t.equal(a.get(), 10)
})

t.test("ttl - 'on-read-and-write' refreshes on read; a read of an expired value does not revive it", async (t) => {
  const clock = new FakeClock(0)
  const ttl = { ttlMs: 100, update: 'on-read-and-write' } as const
  const v = valueState<number>('v', { ttl })
  const l = listState<number>('l', { ttl })
  const m = mapState<string, number>('m', { ttl })
  const r = reducingState<number>('r', (x, y) => x + y, { ttl })
  const b = backendOf([v, l, m, r], clock)
  at(b, 'k1')
  handle(b, v).update(1)
  handle(b, l).add(1)
  handle(b, m).putAll([['read', 1], ['unread', 2]])
  handle(b, r).add(5)
  clock.time = 90
  t.equal(handle(b, v).value(), 1)
  t.same(handle(b, l).get(), [1])
  t.equal(handle(b, m).get('read'), 1)
  t.equal(handle(b, r).get(), 5)
  clock.time = 189
  t.equal(handle(b, v).value(), 1, 'the read at 90 moved expiry to 190')
  t.same(handle(b, l).get(), [1])
  t.equal(handle(b, m).get('read'), 1)
  t.equal(handle(b, m).get('unread'), undefined, 'a map read refreshes only the entry read')
  t.equal(handle(b, r).get(), 5)
  clock.time = 288
  t.same([...handle(b, m).entries()], [['read', 1]])
  clock.time = 387
  t.same([...handle(b, m).keys()], ['read'], 'entries() at 288 refreshed every entry')
  clock.time = 1000
  t.equal(handle(b, v).value(), undefined)
  t.same(handle(b, l).get(), [])
  t.equal(handle(b, m).get('read'), undefined)
  t.equal(handle(b, r).get(), undefined)
  t.equal(b.keyCount(), 0)
})

t.test('ttl - incremental cleanup removes expired keys a few per access, never live ones', async (t) => {
  const clock = new FakeClock(0)
  const v = valueState<number>('v', { ttl: { ttlMs: 10, cleanup: { incremental: 5 } } })
  const keep = valueState<number>('keep', { ttl: { ttlMs: 10, cleanup: { incremental: 0 } } })
  const b = backendOf([v, keep], clock)
  for (let i = 0; i < 100; i++) {
    at(b, `k${i}`)
    handle(b, v).update(i)
    handle(b, keep).update(i)
  }
  clock.time = 5
  for (let i = 100; i < 110; i++) {
    at(b, `k${i}`)
    handle(b, v).update(i)
  }
  t.equal(b.keyCount(), 210)
  clock.time = 12
  at(b, 'probe0')
  const counts: number[] = []
  for (let k = 0; k < 25; k++) {
    handle(b, v).value()
    counts.push([...b.entries('v')].length)
  }
  // 110 entries, 5 checked per access: the 100 expired ones go within 22 accesses, the 10 live stay.
  t.ok(counts.every((c, k) => k === 0 || c <= counts[k - 1]!), 'never grows')
  t.ok(counts[0]! >= 105 && counts[0]! < 110, `the first access removed some (${counts[0]})`)
  t.equal(counts[24], 10, 'every expired key is gone; the 10 live ones stay')
  t.equal([...b.entries('keep')].length, 100, 'a state with cleanup off keeps its expired keys in memory')
  at(b, 'k100')
  t.equal(handle(b, v).value(), 100)
  clock.time = 15
  for (let k = 0; k < 5; k++) handle(b, v).value()
  t.equal([...b.entries('v')].length, 0, 'the cursor wraps around and finds the keys that expired since')
})

t.test('ttl - incremental cleanup trims expired elements of lists and entries of maps', async (t) => {
  const clock = new FakeClock(0)
  const l = listState<number>('l', { ttl: { ttlMs: 10, cleanup: { incremental: 100 } } })
  const m = mapState<string, number>('m', { ttl: { ttlMs: 10, cleanup: { incremental: 100 } } })
  const b = backendOf([l, m], clock)
  at(b, 'k1')
  handle(b, l).add(1)
  handle(b, m).put('old', 1)
  clock.time = 5
  handle(b, l).add(2)
  handle(b, m).put('new', 2)
  clock.time = 10
  at(b, 'k2')
  handle(b, l).get()
  handle(b, m).get('x')
  t.same([...b.entries('l')].map(([k, v]) => [k, (v as { value: number }[]).map((e) => e.value)]), [['k1', [2]]])
  t.same([...b.entries('m')].map(([k, v]) => [k, [...(v as Map<string, unknown>).keys()]]), [['k1', ['new']]])
})

t.test('ttl - a snapshot leaves out what expired when it started, and records the TTL', async (t) => {
  const clock = new FakeClock(0)
  const v = valueState<string>('v', { ttl: { ttlMs: 100, cleanup: { incremental: 0 } } })
  const l = listState<string>('l', { ttl: { ttlMs: 100, cleanup: { incremental: 0 } } })
  const m = mapState<string, string>('m', { ttl: { ttlMs: 100, cleanup: { incremental: 0 } } })
  const plain = valueState<string>('plain')
  const b = backendOf([v, l, m, plain], clock)
  for (const key of ['k1', 'k2']) {
    at(b, key)
    handle(b, v).update(`${key}-old`)
    handle(b, l).add(`${key}-old`)
    handle(b, m).put('old', key)
    handle(b, plain).update(key)
  }
  clock.time = 50
  at(b, 'k2')
  handle(b, v).update('k2-new')
  handle(b, l).add('k2-new')
  handle(b, m).put('new', 'k2')
  clock.time = 120
  const states = chunkContents(snapshotNow(b))
  t.equal(states.get('v')?.ttlMs, 100)
  t.same([...states.get('v')!.entries], [['k2', ['k2-new', 50]]], 'value: only the key written at 50, as a [value, time] pair')
  t.same([...states.get('l')!.entries], [['k2', [['k2-new', 50]]]], 'list: only the live element')
  t.same([...states.get('m')!.entries], [['k2', new Map([['new', ['k2', 50]]])]], 'map: only the live entry')
  t.equal(states.get('plain')?.ttlMs, undefined, 'a state without TTL is written as before')
  t.same([...states.get('plain')!.entries].sort(), [['k1', 'k1'], ['k2', 'k2']])
})

t.test('ttl - restore drops what expired by the restore time and keeps the times of the rest', async (t) => {
  const clock = new FakeClock(0)
  const v = valueState<number>('v', { ttl: { ttlMs: 100 } })
  const l = listState<number>('l', { ttl: { ttlMs: 100 } })
  const b = backendOf([v, l], clock)
  at(b, 'k1')
  handle(b, v).update(1)
  handle(b, l).add(1)
  clock.time = 60
  at(b, 'k2')
  handle(b, v).update(2)
  at(b, 'k1')
  handle(b, l).add(2)
  const snapshot = snapshotNow(b)
  t.equal(chunkContents(snapshot).get('v')?.entries.size, 2, 'the snapshot at 60 holds both keys')

  const later = new FakeClock(130)
  const r = restoreInto(backendOf([v, l], later), snapshot)
  t.same([...r.entries('v')].map(([k]) => k), ['k2'], 'the value written at 0 is not even loaded')
  at(r, 'k1')
  t.same(handle(r, l).get(), [2])
  t.equal(handle(r, v).value(), undefined)
  at(r, 'k2')
  t.equal(handle(r, v).value(), 2)
  later.time = 160
  t.equal(handle(r, v).value(), undefined, 'the restored value kept its time (60) and expired at 160')
})

t.test('ttl - a snapshot taken without TTL restores into a state with TTL: values live ttlMs from the restore', async (t) => {
  const clock = new FakeClock(0)
  const before = { v: valueState<number>('v'), l: listState<number>('l'), m: mapState<string, number>('m', { serde: json as Serde<number> }) }
  const b = backendOf(Object.values(before), clock)
  at(b, 'k1')
  handle(b, before.v).update(1)
  handle(b, before.l).addAll([1, 2])
  handle(b, before.m).put('a', 1)
  const snapshot = snapshotNow(b)

  const ttl = { ttlMs: 100 }
  const after = { v: valueState<number>('v', { ttl }), l: listState<number>('l', { ttl }), m: mapState<string, number>('m', { ttl, serde: json as Serde<number> }) }
  const restoreClock = new FakeClock(5000)
  const r = restoreInto(backendOf(Object.values(after), restoreClock), snapshot)
  at(r, 'k1')
  restoreClock.time = 5099
  t.equal(handle(r, after.v).value(), 1)
  t.same(handle(r, after.l).get(), [1, 2])
  t.equal(handle(r, after.m).get('a'), 1, 'decoded by the serde')
  restoreClock.time = 5100
  t.equal(handle(r, after.v).value(), undefined)
  t.same(handle(r, after.l).get(), [])
  t.equal(handle(r, after.m).get('a'), undefined)
})

t.test('ttl - a snapshot taken with TTL restores into a state without: expired values dropped, times removed', async (t) => {
  const clock = new FakeClock(0)
  const ttl = { ttlMs: 100 }
  const withTtl = { v: valueState<number>('v', { ttl }), l: listState<number>('l', { ttl, serde: json as Serde<number> }) }
  const b = backendOf(Object.values(withTtl), clock)
  at(b, 'k1')
  handle(b, withTtl.v).update(1)
  handle(b, withTtl.l).add(1)
  clock.time = 50
  handle(b, withTtl.l).add(2)
  at(b, 'k2')
  handle(b, withTtl.v).update(2)
  const snapshot = snapshotNow(b)

  const plain = { v: valueState<number>('v'), l: listState<number>('l', { serde: json as Serde<number> }) }
  const r = restoreInto(backendOf(Object.values(plain), new FakeClock(120)), snapshot)
  t.same([...r.entries('v')].sort(), [['k2', 2]], 'k1 expired under the TTL it was written with')
  t.same([...r.entries('l')], [['k1', [2]]], 'plain values, not [value, time] pairs')
})

t.test('ttl - with a serde: the chunk holds [bytes, time] pairs and the values come back decoded', async (t) => {
  const clock = new FakeClock(7)
  const ttl = { ttlMs: 1000 }
  const v = valueState<{ n: number }>('v', { ttl, serde: json as Serde<{ n: number }> })
  const l = listState<string>('l', { ttl, serde: json as Serde<string> })
  const m = mapState<string, number[]>('m', { ttl, serde: json as Serde<number[]> })
  const agg = aggregatingState('agg', { createAccumulator: () => [] as number[], add: (a, x: number) => [...a, x], getResult: (a) => a.length }, { ttl, serde: json as Serde<number[]> })
  const b = backendOf([v, l, m, agg], clock)
  at(b, 'k4')
  handle(b, v).update({ n: 1 })
  handle(b, l).add('x')
  handle(b, m).put('a', [1, 2])
  handle(b, agg).add(5)
  handle(b, agg).add(6)
  const snapshot = snapshotNow(b)
  const states = chunkContents(snapshot)
  const pair = states.get('v')!.entries.get('k4') as [Uint8Array, number]
  t.same(JSON.parse(new TextDecoder().decode(pair[0])), { n: 1 }, 'the value is the serde bytes')
  t.equal(pair[1], 7)
  const r = restoreInto(backendOf([v, l, m, agg], new FakeClock(500)), snapshot)
  at(r, 'k4')
  t.same(handle(r, v).value(), { n: 1 })
  t.same(handle(r, l).get(), ['x'])
  t.same(handle(r, m).get('a'), [1, 2])
  t.equal(handle(r, agg).get(), 2)
})

t.test('ttl - copy-on-write: a refresh, an add and a cleanup during a snapshot do not change it', async (t) => {
  const clock = new FakeClock(0)
  const ttl = { ttlMs: 100, update: 'on-read-and-write', cleanup: { incremental: 50 } } as const
  const v = valueState<number>('v', { ttl })
  const l = listState<number>('l', { ttl })
  const m = mapState<string, number>('m', { ttl })
  const b = backendOf([v, l, m], clock)
  for (const key of ['k0', 'k1', 'k2', 'k3']) {
    at(b, key)
    handle(b, v).update(1)
    handle(b, l).add(1)
    handle(b, m).put('a', 1)
  }
  clock.time = 50
  const snapshot = b.startSnapshot()
  clock.time = 60
  at(b, 'k1')
  t.equal(handle(b, v).value(), 1, 'refreshes v of k1 to 60')
  handle(b, l).add(2)
  t.equal(handle(b, m).get('a'), 1, 'refreshes m.a of k1 to 60')
  handle(b, m).put('b', 2)
  clock.time = 150
  at(b, 'k2')
  // Each access runs the cleanup of the state accessed: k0, k2 and k3 (written at 0) go.
  handle(b, v).value()
  handle(b, l).get()
  handle(b, m).get('a')
  t.equal(b.keyCount(), 3, 'only k1 is left in the live state')
  b.serializeSome(Infinity)
  t.equal(snapshot.complete, true)
  const states = chunkContents(snapshot)
  t.same([...states.get('v')!.entries].sort(), [['k0', [1, 0]], ['k1', [1, 0]], ['k2', [1, 0]], ['k3', [1, 0]]], 'the snapshot is the state at 50')
  t.same(states.get('l')!.entries.get('k1'), [[1, 0]])
  t.same(states.get('m')!.entries.get('k1'), new Map([['a', [1, 0]]]))
  at(b, 'k1')
  t.equal(handle(b, v).value(), 1, 'live: k1 was refreshed at 60 and read at 150 is still alive')
})

t.test('ttl - strict state freezes what value, list and map handles return', async (t) => {
  const clock = new FakeClock(0)
  const ttl = { ttlMs: 100 }
  const v = valueState<{ n: number }>('v', { ttl })
  const l = listState<{ n: number }>('l', { ttl })
  const m = mapState<string, { n: number }>('m', { ttl })
  const b = backendOf([v, l, m], clock, true)
  at(b, 'k1')
  handle(b, v).update({ n: 1 })
  handle(b, l).add({ n: 1 })
  handle(b, m).put('a', { n: 1 })
  t.throws(() => {
    ;(handle(b, v).value() as { n: number }).n = 2
  }, TypeError)
  t.throws(() => (handle(b, l).get() as { n: number }[]).push({ n: 2 }), TypeError)
  t.throws(() => {
    handle(b, l).get()[0]!.n = 2
  }, TypeError)
  t.throws(() => {
    handle(b, m).get('a')!.n = 2
  }, TypeError)
  handle(b, l).add({ n: 2 })
  t.same(handle(b, l).get(), [{ n: 1 }, { n: 2 }], 'add still works after get() returned a frozen list')
})

t.test('ttl - malformed definitions fail at once with a JobDefinitionError saying what to write', async (t) => {
  const bad: [string, unknown, RegExp][] = [
    ['not an object', 60_000, /ttl must be an object like \{ ttlMs: 60000 \}/],
    ['null', null, /ttl must be an object/],
    ['missing ttlMs', {}, /ttl\.ttlMs must be a positive integer/],
    ['zero', { ttlMs: 0 }, /ttl\.ttlMs must be a positive integer number of milliseconds, got 0/],
    ['negative', { ttlMs: -5 }, /got -5/],
    ['NaN', { ttlMs: NaN }, /got NaN/],
    ['Infinity', { ttlMs: Infinity }, /got Infinity/],
    ['a fraction', { ttlMs: 1.5 }, /got 1.5/],
    ['a string', { ttlMs: '60s' }, /got "60s"/],
    ['beyond safe integers', { ttlMs: 2 ** 53 }, /positive integer/],
    ['an unknown key', { ttlMs: 1, ttl: 5 }, /ttl\.ttl is not an option of ttl \(options: ttlMs, update, cleanup\)/],
    ['a bad update', { ttlMs: 1, update: 'on-read' }, /ttl\.update must be 'on-create-and-write' or 'on-read-and-write', got "on-read"/],
    ['a bad cleanup', { ttlMs: 1, cleanup: 5 }, /ttl\.cleanup must be an object/],
    ['a negative incremental', { ttlMs: 1, cleanup: { incremental: -1 } }, /ttl\.cleanup\.incremental must be an integer from 0/],
    ['an unknown cleanup key', { ttlMs: 1, cleanup: { fullSnapshot: true } }, /ttl\.cleanup\.fullSnapshot is not an option/],
  ]
  for (const [what, ttl, message] of bad) {
    for (const make of [
      () => valueState('s', { ttl: ttl as never }),
      () => listState('s', { ttl: ttl as never }),
      () => mapState('s', { ttl: ttl as never }),
      () => reducingState('s', (a: number, b: number) => a + b, { ttl: ttl as never }),
      () => aggregatingState('s', { createAccumulator: () => 0, add: (a: number, v: number) => a + v, getResult: (a) => a }, { ttl: ttl as never }),
    ]) {
      const err = (() => {
        try {
          make()
        } catch (e) {
          return e
        }
        return undefined
      })()
      t.ok(err instanceof JobDefinitionError, `${what}: a JobDefinitionError`)
      t.match((err as Error).message, /^state s: /)
      t.match((err as Error).message, message, what)
    }
  }
  const ok = valueState('ok', { ttl: { ttlMs: 30 * 24 * 3600_000 } })
  t.same(ok.ttl, { ttlMs: 30 * 24 * 3600_000, update: 'on-create-and-write', incrementalCleanup: 5 }, 'defaults; a TTL of 30 days is fine')
  t.ok(Object.isFrozen(ok.ttl))
  t.equal(valueState('plain').ttl, undefined)
  t.notOk('ttl' in valueState('plain'), 'a descriptor without TTL has no ttl field')
})

t.test('ttl - a chunk that says TTL but holds no [value, time] pairs is refused, not misread', async (t) => {
  const v = valueState<number>('v', { ttl: { ttlMs: 100 } })
  const data = encodeKeyedChunk([{ name: 'v', kind: 'value', entries: ['k1', 5], ttlMs: 100 }])
  t.throws(() => backendOf([v], new FakeClock(0)).restoreGroup(1, data), /state "v" is marked as having TTL in the snapshot but holds a value that is not a \[value, time\] pair/)
  const l = listState<number>('l', { ttl: { ttlMs: 100 } })
  const list = encodeKeyedChunk([{ name: 'l', kind: 'list', entries: ['k1', 5] }])
  t.throws(() => backendOf([l], new FakeClock(0)).restoreGroup(1, list), /not a list/)
})

// A whole job. The fake clock is set to each record's seq by the process function itself, so every
// state access of a record happens at that record's time, whatever the batching.

const GEN: GeneratorOptions = { records: 4000, keys: 40, seed: 3 }
const TTL_MS = 50

interface Out {
  seq: number
  last: number | null
  recent: number
}

/** Per record: the key's last value if written less than TTL_MS ago, and how many of its values arrived in the last TTL_MS. */
function model(records: readonly GeneratedRecord[], timeOf: (r: GeneratedRecord) => number, state = new Map<string, { t: number; v: number }[]>()): Out[] {
  return records.map((r) => {
    const now = timeOf(r)
    const live = (state.get(r.key) ?? []).filter((e) => now - e.t < TTL_MS)
    const out = { seq: r.seq, last: live.length === 0 ? null : live[live.length - 1]!.v, recent: live.length }
    state.set(r.key, [...live, { t: now, v: r.value }])
    return out
  })
}

function ttlJob(name: string, gen: GeneratorOptions, clock: FakeClock, shift: number, out: Out[], parallelism = 2) {
  const last = valueState<number>('last', { ttl: { ttlMs: TTL_MS } })
  const recent = listState<number>('recent', { ttl: { ttlMs: TTL_MS } })
  const j = job(name, { maxParallelism: 16 })
  j.source('in', generatorSource(gen))
    .keyBy((r) => r.key)
    .process(
      'ttl',
      { state: { last, recent }, parallelism },
      (r, ctx) => {
        clock.time = r.seq + shift
        const l = ctx.state(last)
        const rc = ctx.state(recent)
        ctx.emit({ seq: r.seq, last: l.value() ?? null, recent: rc.get().length })
        l.update(r.value)
        rc.add(r.value)
      },
    )
    .sink('out', arraySink(out))
  return j
}

function quiet(store: SnapshotStore, clock: Clock, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, clock, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

const bySeq = (a: Out, b: Out) => a.seq - b.seq
const records = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => generatedRecord(GEN, from + i))

t.test('ttl job - expired values are never returned; a restore keeps the times; a later clock drops them', async (t) => {
  const store = tempEmbeddedStore(t, 'weir-ttl-')
  const clock = new FakeClock(0)
  const first: Out[] = []
  await runJob(ttlJob('ttl', GEN, clock, 0, first), quiet(store, clock, { checkpoints: { intervalMs: 60_000 } }))
  const expected = model(records(0, GEN.records), (r) => r.seq)
  t.same(first.sort(bySeq), expected, 'every record saw exactly the live values of its key')
  t.ok(expected.some((o) => o.last === null) && expected.some((o) => o.last !== null), 'the run has both expired and live reads')

  // The final snapshot, taken at time 3999 (the last record's), holds only what was live then.
  const saved = await readSnapshotState(store, 'ttl', 'ttl', 'recent')
  const liveAtEnd = new Map<string, number[]>()
  for (const r of records(0, GEN.records)) if (GEN.records - 1 - r.seq < TTL_MS) liveAtEnd.set(r.key, [...(liveAtEnd.get(r.key) ?? []), r.value])
  t.same(new Map([...saved].sort()), new Map([...liveAtEnd].sort()), 'readSnapshotState returns the live values, without their times')

  // Same time line, rescaled from 2 to 3 instances: the state restored at 3999 goes on as if the job had never stopped.
  const more = { ...GEN, records: GEN.records + 1000 }
  const second: Out[] = []
  await runJob(ttlJob('ttl', more, clock, 0, second, 3), quiet(store, clock, { checkpoints: { intervalMs: 60_000 }, restore: 'latest' }))
  t.same(second.sort(bySeq), model(records(0, more.records), (r) => r.seq).slice(GEN.records), 'exact across the restore')

  // A restore 1000 ms later than the snapshot: everything restored has expired.
  clock.time = more.records - 1 + 1000
  const evenMore = { ...GEN, records: more.records + 500 }
  const third: Out[] = []
  await runJob(ttlJob('ttl', evenMore, clock, 1000, third), quiet(store, clock, { checkpoints: { intervalMs: 60_000 }, restore: 'latest' }))
  t.same(third.sort(bySeq), model(records(more.records, evenMore.records), (r) => r.seq + 1000), 'nothing restored is returned')
})

t.test('ttl job - RunOptions.clock must be a clock', async (t) => {
  const err = await failure(runJob(ttlJob('bad-clock', GEN, new FakeClock(), 0, []), { clock: 5 as never, logLevel: 'silent' }))
  t.ok(err instanceof InvalidOptionError)
  t.match(err.message, /clock/)
})

t.test('ttl - a clock that returns NaN fails the access with a clear error, and stamps nothing', async (t) => {
  const clock = new FakeClock(NaN)
  const v = valueState<number>('v', { ttl: { ttlMs: 100 } })
  const b = backendOf([v], clock)
  at(b, 'k1')
  t.throws(() => handle(b, v).update(1), { name: 'JobDefinitionError', message: /state v: the clock returned NaN; a Clock's now\(\) must return milliseconds as a finite number/ })
  t.equal(b.keyCount(), 0)
  const plain = valueState<number>('v')
  const p = backendOf([plain], new FakeClock(0))
  at(p, 'k1')
  handle(p, plain).update(1)
  t.throws(() => restoreInto(backendOf([v], new FakeClock(NaN)), snapshotNow(p)), /state "v" has TTL and the clock returned NaN/, 'nor stamps restored values with NaN')
})

t.test('ttl job - a job restored from a snapshot taken before TTL was declared: values live ttlMs from the restore', async (t) => {
  const store = tempEmbeddedStore(t, 'weir-ttl-')
  const clock = new FakeClock(0)
  const build = (name: string, records: number, ttl: boolean, out: { seq: number; total: number | null }[]) => {
    const total = valueState<number>('total', ttl ? { ttl: { ttlMs: 100 } } : {})
    const j = job(name, { maxParallelism: 16 })
    j.source('in', generatorSource({ ...GEN, records }))
      .keyBy((r) => r.key)
      .process('sum', { state: { total } }, (r, ctx) => {
        clock.time = r.seq < 1000 ? r.seq : 10_000 + r.seq
        const s = ctx.state(total)
        ctx.emit({ seq: r.seq, total: s.value() ?? null })
        s.update((s.value() ?? 0) + r.value)
      })
      .sink('out', arraySink(out))
    return j
  }
  await runJob(build('enable', 1000, false, []), quiet(store, clock, { checkpoints: { intervalMs: 60_000 } }))
  const before = await readSnapshotState(store, 'enable', 'sum', 'total')
  clock.time = 10_000 + 999 // the restore happens at 10999; the next records come at 11000 and later
  const out: { seq: number; total: number | null }[] = []
  await runJob(build('enable', 1200, true, out), quiet(store, clock, { checkpoints: { intervalMs: 60_000 }, restore: 'latest' }))
  const sums = new Map(before as Map<string, number>)
  const times = new Map<string, number>([...sums.keys()].map((k) => [k, 10_999]))
  const expected = records(1000, 1200).map((r) => {
    const now = 10_000 + r.seq
    const live = times.has(r.key) && now - times.get(r.key)! < 100
    const o = { seq: r.seq, total: live ? sums.get(r.key)! : null }
    sums.set(r.key, (live ? sums.get(r.key)! : 0) + r.value)
    times.set(r.key, now)
    return o
  })
  t.same(out.sort((a, b) => a.seq - b.seq), expected)
  t.ok(expected.some((o) => o.total !== null && o.seq < 1100), 'restored totals are read in the first 100 ms')
  t.ok(expected.some((o) => o.total === null), 'and expire after')
})

// Crash recovery: a child process runs a job with TTL state on a clock set from each record's seq
// and SIGKILLs itself part-way; a second child restores the latest checkpoint and finishes. The
// final snapshot must hold exactly the live state computed from the generator's sequence.

const INDEX_URL = new URL('../../index.ts', import.meta.url).href
const REPO = new URL('../../', import.meta.url)
const CRASH_GEN = { records: 20_000, keys: 50, seed: 11, ratePerSecond: 20_000 }
const CRASH_TTL = 100

function crashScript(killAt: number | undefined, restore: 'latest' | 'none' = 'latest'): string {
  return `
    import { job, generatorSource, valueState, listState, reducingState, runJob, EmbeddedStore } from ${JSON.stringify(INDEX_URL)}
    const store = new EmbeddedStore({ dir: process.env.WEIR_TEST_DIR })
    const clock = { time: 0, now() { return this.time } }
    const ttl = { ttlMs: ${CRASH_TTL} }
    const last = valueState('last', { ttl })
    const recent = listState('recent', { ttl })
    const sum = reducingState('sum', (a, b) => a + b, { ttl })
    const j = job('ttl-crash', { maxParallelism: 16 })
    j.source('in', generatorSource(${JSON.stringify(CRASH_GEN)}))
      .keyBy((r) => r.key)
      .process('ttl', { state: { last, recent, sum } }, (r, ctx) => {
        clock.time = r.seq
        if (r.seq === ${killAt ?? -1}) process.kill(process.pid, 'SIGKILL')
        ctx.state(last).update(r.value)
        ctx.state(recent).add(r.seq)
        ctx.state(sum).add(r.value)
      })
      .sink('out', { kind: 'discard', open: () => ({ write() {} }) })
    const result = await runJob(j, { store, clock, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, checkpoints: { intervalMs: 20 }, restore: '${restore}' })
    await store.close()
    console.log(JSON.stringify({ status: result.status, restoredFrom: result.restoredFrom ?? null, read: result.records.in }))
  `
}

function runScript(script: string, dir: string): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, WEIR_TEST_DIR: dir }
  delete env.NODE_OPTIONS
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.once('exit', (code, signal) => {
      clearTimeout(guard)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

faultTest(t, 'ttl crash recovery - SIGKILL part-way, restore from latest, exact live state at the end', async (t, mutation) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-ttl-crash-'))
  const store = new EmbeddedStore({ dir })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  // Killed near the end, so the final state depends on what the restore kept (a sum restored
  // with the wrong times would start over).
  const killed = await runScript(crashScript(19_950), dir)
  t.equal(killed.signal, 'SIGKILL', 'the first run was killed', { stderr: killed.stderr })
  await store.open()
  const latest = await store.latestCompleted('ttl-crash')
  t.ok(latest !== undefined, `a checkpoint completed before the kill (${latest?.id})`)
  const left = latest === undefined ? CRASH_GEN.records : await recordsLeftAfter(store, 'ttl-crash', latest.id, 'in', CRASH_GEN.records)
  const finished = await runScript(crashScript(undefined, mutation?.restore), dir)
  t.equal(finished.code, 0, 'the second run finishes', { stderr: finished.stderr })
  const result = JSON.parse(finished.stdout.trim().split('\n').pop() ?? '{}') as { status?: string; restoredFrom?: number | null; read?: number }
  t.equal(result.status, 'finished')
  t.equal(result.restoredFrom, latest?.id, `the second run restored snapshot ${latest?.id}, the latest completed`)
  t.equal(result.read, left, `and read the ${left} records after its offset`)

  // The live state at the end (time 19999): per key, what was written in the last 100 ms; a sum
  // starts over after a gap of 100 ms or more.
  const end = CRASH_GEN.records - 1
  const lastOf = new Map<string, { seq: number; value: number }>()
  const sums = new Map<string, number>()
  const recents = new Map<string, number[]>()
  for (let seq = 0; seq < CRASH_GEN.records; seq++) {
    const r = generatedRecord(CRASH_GEN, seq)
    const prev = lastOf.get(r.key)
    const alive = prev !== undefined && seq - prev.seq < CRASH_TTL
    sums.set(r.key, (alive ? sums.get(r.key)! : 0) + r.value)
    lastOf.set(r.key, { seq, value: r.value })
    if (end - seq < CRASH_TTL) recents.set(r.key, [...(recents.get(r.key) ?? []), seq])
  }
  const liveKeys = [...lastOf].filter(([, l]) => end - l.seq < CRASH_TTL).map(([k]) => k)
  const want = {
    last: new Map(liveKeys.map((k) => [k, lastOf.get(k)!.value])),
    sum: new Map(liveKeys.map((k) => [k, sums.get(k)!])),
    recent: recents,
  }
  t.ok(liveKeys.length > 10 && liveKeys.length < CRASH_GEN.keys, `some keys live at the end, some expired (${liveKeys.length})`)
  for (const name of ['last', 'sum', 'recent'] as const) {
    const got = await readSnapshotState(store, 'ttl-crash', 'ttl', name)
    const sortedEntries = (m: Map<Key, unknown>) => [...m].sort(([a], [b]) => String(a).localeCompare(String(b)))
    t.equal(JSON.stringify(sortedEntries(got)), JSON.stringify(sortedEntries(want[name] as Map<Key, unknown>)), `${name}: exactly the live state`)
  }
}, [{ mutation: RESTORE_OFF, because: /the second run restored snapshot \d+/ }])

t.test('ttl - a restore with another ttlMs keeps the stored times and judges them by the new TTL', async (t) => {
  const clock = new FakeClock(0)
  const v1 = valueState<number>('v', { ttl: { ttlMs: 1000 } })
  const b1 = backendOf([v1], clock)
  at(b1, 'k1')
  handle(b1, v1).update(1)
  clock.time = 100
  at(b1, 'k2')
  handle(b1, v1).update(2)
  const snapshot = snapshotNow(b1)
  const shorter = valueState<number>('v', { ttl: { ttlMs: 150 } })
  const r = restoreInto(backendOf([shorter], new FakeClock(200)), snapshot)
  t.same([...r.entries('v')], [['k2', { value: 2, ts: 100 }]], 'k1 (written at 0) expired under the new 150 ms')
})
