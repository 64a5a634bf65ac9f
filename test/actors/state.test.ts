import t from 'tap'
import { JobDefinitionError } from '../../actors/errors.ts'
import { HeapKeyedBackend, type KeyedSnapshot } from '../../actors/state/heap-backend.ts'
import type { Key, KeyGroupRange } from '../../actors/state/key-groups.ts'
import {
  aggregatingState,
  listState,
  mapState,
  reducingState,
  valueState,
  type Aggregator,
  type StateDescriptor,
  type StateHandle,
} from '../../actors/api/state.ts'
import { decodeKeyedChunk, encodeKeyedChunk } from '../../persistence/keyed-chunk.ts'
import type { Serde } from '../../persistence/serde.ts'

const RANGE: KeyGroupRange = { start: 0, end: 7 }

function handle<D extends StateDescriptor>(backend: HeapKeyedBackend, descriptor: D): StateHandle<D> {
  const h = backend.handle(descriptor)
  if (h === undefined) throw new Error(`state ${descriptor.name} is not declared`)
  return h as StateHandle<D>
}

/** Encodes every marked key group at once and returns the snapshot's groups. */
function snapshotNow(backend: HeapKeyedBackend): KeyedSnapshot {
  const snapshot = backend.startSnapshot()
  backend.serializeSome(Infinity)
  return snapshot
}

function restoreInto(backend: HeapKeyedBackend, snapshot: KeyedSnapshot): HeapKeyedBackend {
  for (const g of snapshot.groups) if (g.keyGroup >= backend.range.start && g.keyGroup <= backend.range.end) backend.restoreGroup(g.keyGroup, g.data)
  return backend
}

/** Every (key, stored value) of a state, sorted by key, as plain data to compare. */
function dump(backend: HeapKeyedBackend, stateName: string): [Key, unknown][] {
  return [...backend.entries(stateName)].sort(([a], [b]) => String(a).localeCompare(String(b)))
}

// An aggregator that keeps a running average in an immutable { sum, n } accumulator.
const average: Aggregator<number, { sum: number; n: number }, number> = {
  createAccumulator: () => ({ sum: 0, n: 0 }),
  add: (acc, v) => ({ sum: acc.sum + v, n: acc.n + 1 }),
  getResult: (acc) => acc.sum / acc.n,
}

const json: Serde<unknown> = {
  encode: (v) => new TextEncoder().encode(JSON.stringify(v)),
  decode: (b) => JSON.parse(new TextDecoder().decode(b)) as unknown,
}

t.test('value state - value() is the default until updated; clear returns to the default', async (t) => {
  const count = valueState<number>('count', { default: 0 })
  const b = new HeapKeyedBackend([count], RANGE)
  b.setCurrentKey('a', 3)
  const c = handle(b, count)
  t.equal(c.value(), 0)
  c.update(5)
  t.equal(c.value(), 5)
  c.update(c.value() + 1)
  t.equal(c.value(), 6)
  c.clear()
  t.equal(c.value(), 0)
  t.equal(b.keyCount(), 0, 'a cleared value holds no key')
})

t.test('value state - without a default value() is undefined until updated; update(undefined) clears', async (t) => {
  const last = valueState<string>('last')
  const b = new HeapKeyedBackend([last], RANGE)
  b.setCurrentKey('a', 1)
  const h = handle(b, last)
  t.equal(h.value(), undefined)
  h.update('x')
  t.equal(h.value(), 'x')
  t.equal(b.keyCount(), 1)
  h.update(undefined as unknown as string)
  t.equal(h.value(), undefined)
  t.equal(b.keyCount(), 0)
})

t.test('value state - falsy values (0, empty string, false, null) are kept, not replaced by the default', async (t) => {
  const v = valueState<unknown>('v', { default: 'dflt' })
  const b = new HeapKeyedBackend([v], RANGE)
  const h = handle(b, v)
  for (const [i, value] of [0, '', false, null].entries()) {
    b.setCurrentKey(`k${i}`, i)
    h.update(value)
    t.equal(h.value(), value)
  }
})

t.test('list state - add appends, addAll appends in order, update replaces, clear empties', async (t) => {
  const seen = listState<number>('seen')
  const b = new HeapKeyedBackend([seen], RANGE)
  b.setCurrentKey('a', 0)
  const l = handle(b, seen)
  t.same(l.get(), [])
  l.add(1)
  l.add(2)
  t.same(l.get(), [1, 2])
  l.addAll([3, 4])
  t.same(l.get(), [1, 2, 3, 4])
  l.addAll([])
  t.same(l.get(), [1, 2, 3, 4])
  l.update([9, 8])
  t.same(l.get(), [9, 8])
  l.clear()
  t.same(l.get(), [])
  l.addAll([5, 6])
  t.same(l.get(), [5, 6], 'addAll on an empty list')
  l.update([])
  t.same(l.get(), [])
  t.equal(b.keyCount(), 0, 'an emptied list holds no key')
})

t.test('list state - update and addAll copy their argument', async (t) => {
  const items = listState<number>('items')
  const b = new HeapKeyedBackend([items], RANGE)
  b.setCurrentKey('a', 0)
  const l = handle(b, items)
  const given = [1, 2]
  l.update(given)
  given.push(3)
  t.same(l.get(), [1, 2])
  l.clear()
  const more = [4]
  l.addAll(more)
  more.push(5)
  t.same(l.get(), [4])
})

t.test('map state - put, get, contains, remove, entries, keys, values, isEmpty, putAll, clear', async (t) => {
  const prices = mapState<string, number>('prices')
  const b = new HeapKeyedBackend([prices], RANGE)
  b.setCurrentKey('shop', 2)
  const m = handle(b, prices)
  t.equal(m.isEmpty(), true)
  t.equal(m.get('apple'), undefined)
  t.equal(m.contains('apple'), false)
  t.same([...m.entries()], [])
  m.put('apple', 3)
  m.put('pear', 4)
  t.equal(m.isEmpty(), false)
  t.equal(m.get('apple'), 3)
  t.equal(m.contains('pear'), true)
  m.put('apple', 5)
  t.same([...m.entries()], [['apple', 5], ['pear', 4]])
  t.same([...m.keys()], ['apple', 'pear'])
  t.same([...m.values()], [5, 4])
  m.remove('apple')
  m.remove('absent')
  t.equal(m.contains('apple'), false)
  t.same([...m.entries()], [['pear', 4]])
  m.putAll([['fig', 1], ['kiwi', 2]])
  t.same([...m.keys()], ['pear', 'fig', 'kiwi'])
  m.putAll(new Map([['pear', 7]]))
  t.equal(m.get('pear'), 7)
  m.clear()
  t.equal(m.isEmpty(), true)
  t.equal(b.keyCount(), 0)
  m.put('x', 1)
  m.remove('x')
  t.equal(m.isEmpty(), true, 'removing the last entry empties the map')
  t.equal(b.keyCount(), 0, 'an emptied map holds no key')
})

t.test('reducing state - get is undefined at first; add folds with the reduce function; clear resets', async (t) => {
  const max = reducingState<number>('max', (a, b) => Math.max(a, b))
  const b = new HeapKeyedBackend([max], RANGE)
  b.setCurrentKey('a', 0)
  const r = handle(b, max)
  t.equal(r.get(), undefined)
  r.add(3)
  t.equal(r.get(), 3)
  r.add(1)
  t.equal(r.get(), 3)
  r.add(7)
  t.equal(r.get(), 7)
  r.clear()
  t.equal(r.get(), undefined)
  r.add(-2)
  t.equal(r.get(), -2, 'after clear the first add is the value itself')
})

t.test('aggregating state - add folds into one accumulator per key; get reads the result', async (t) => {
  const avg = aggregatingState('avg', average)
  const b = new HeapKeyedBackend([avg], RANGE)
  const a = handle(b, avg)
  b.setCurrentKey('x', 0)
  t.equal(a.get(), undefined)
  a.add(2)
  a.add(4)
  t.equal(a.get(), 3)
  b.setCurrentKey('y', 0)
  t.equal(a.get(), undefined, 'another key has its own accumulator')
  a.add(10)
  t.equal(a.get(), 10)
  b.setCurrentKey('x', 0)
  a.clear()
  t.equal(a.get(), undefined)
})

t.test('backend - keys in the same and in different key groups, and different states, are independent', async (t) => {
  const count = valueState<number>('count', { default: 0 })
  const total = valueState<number>('total', { default: 0 })
  const b = new HeapKeyedBackend([count, total], RANGE)
  const c = handle(b, count)
  const s = handle(b, total)
  const keys: [Key, number][] = [['a', 0], ['b', 0], ['c', 5], [7, 7], [8n, 7]]
  keys.forEach(([key, group], i) => {
    b.setCurrentKey(key, group)
    c.update(i + 1)
    s.update((i + 1) * 100)
  })
  keys.forEach(([key, group], i) => {
    b.setCurrentKey(key, group)
    t.equal(c.value(), i + 1, `count of ${String(key)}`)
    t.equal(s.value(), (i + 1) * 100, `total of ${String(key)}`)
  })
  b.setCurrentKey('a', 3)
  t.equal(c.value(), 0, 'the same key in another key group is another entry')
  b.setCurrentKey('7', 7)
  t.equal(c.value(), 0, 'the string "7" is not the number 7')
  t.equal(b.keyCount(), keys.length * 2)
})

t.test('backend - handle() of an undeclared descriptor is undefined; two states with one name throw', async (t) => {
  const a = valueState<number>('a')
  const b = new HeapKeyedBackend([a], RANGE)
  t.equal(b.handle(valueState<number>('a')), undefined, 'handles are found by descriptor identity')
  t.equal(b.handle(listState<number>('other')), undefined)
  t.throws(() => new HeapKeyedBackend([a, listState<number>('a')], RANGE), { name: 'JobDefinitionError', message: /two states are named a/ })
})

/** Fills a backend with every state kind over several keys and key groups. */
function fillAllKinds() {
  const value = valueState<number>('value', { default: 0 })
  const list = listState<string>('list')
  const map = mapState<string, number>('map')
  const max = reducingState<number>('max', (a, b) => Math.max(a, b))
  const sum = aggregatingState<number, number, number>('sum', { createAccumulator: () => 0, add: (a, v) => a + v, getResult: (a) => a * 10 })
  const descriptors = [value, list, map, max, sum]
  const b = new HeapKeyedBackend(descriptors, RANGE)
  const keys: [Key, number][] = [['a', 0], ['b', 0], ['c', 3], [42, 5], [9n, 7]]
  keys.forEach(([key, group], i) => {
    b.setCurrentKey(key, group)
    handle(b, value).update(i + 1)
    handle(b, list).addAll([`x${i}`, `y${i}`])
    handle(b, map).putAll([['p', i], ['q', i * 2]])
    handle(b, max).add(i)
    handle(b, max).add(i * 3)
    handle(b, sum).add(i)
    handle(b, sum).add(1)
  })
  return { b, descriptors, keys, value, list, map, max, sum }
}

t.test('snapshot - every state kind round-trips through restoreGroup into a new backend', async (t) => {
  const { b, descriptors, keys, value, list, map, max, sum } = fillAllKinds()
  const snapshot = snapshotNow(b)
  t.equal(snapshot.complete, true)
  t.same(snapshot.groups.map((g) => g.keyGroup).sort((x, y) => x - y), [0, 3, 5, 7], 'one chunk per key group that holds state')
  const r = restoreInto(new HeapKeyedBackend(descriptors, RANGE), snapshot)
  for (const d of descriptors) t.same(dump(r, d.name), dump(b, d.name), `state ${d.name}`)
  keys.forEach(([key, group], i) => {
    r.setCurrentKey(key, group)
    t.equal(handle(r, value).value(), i + 1)
    t.same(handle(r, list).get(), [`x${i}`, `y${i}`])
    t.same([...handle(r, map).entries()], [['p', i], ['q', i * 2]])
    t.equal(handle(r, max).get(), i * 3)
    t.equal(handle(r, sum).get(), (i + 1) * 10)
  })
  t.equal(r.keyCount(), b.keyCount())
  // The restored state goes on working.
  r.setCurrentKey('a', 0)
  handle(r, list).add('z')
  handle(r, sum).add(5)
  t.same(handle(r, list).get(), ['x0', 'y0', 'z'])
  t.equal(handle(r, sum).get(), 60)
})

t.test('snapshot - plain-object values keep their shape (objects stay objects, Maps stay Maps)', async (t) => {
  // The documented aggregatingState example keeps a { sum, n } accumulator: after a restore it
  // must still be an object with sum and n, or the average is NaN.
  const avg = aggregatingState('avg', average)
  const profile = valueState<{ name: string; tags: string[]; nested: { n: number } }>('profile')
  const events = listState<{ type: string }>('events')
  const byDay = mapState<string, { count: number }>('byDay')
  const b = new HeapKeyedBackend([avg, profile, events, byDay], RANGE)
  b.setCurrentKey('u1', 2)
  handle(b, avg).add(2)
  handle(b, avg).add(6)
  handle(b, profile).update({ name: 'ada', tags: ['x'], nested: { n: 1 } })
  handle(b, events).add({ type: 'click' })
  handle(b, byDay).put('mon', { count: 3 })
  const r = restoreInto(new HeapKeyedBackend([avg, profile, events, byDay], RANGE), snapshotNow(b))
  r.setCurrentKey('u1', 2)
  t.equal(handle(r, avg).get(), 4, 'the average survives a restore')
  t.strictSame(handle(r, profile).value(), { name: 'ada', tags: ['x'], nested: { n: 1 } })
  t.strictSame(handle(r, events).get(), [{ type: 'click' }])
  t.strictSame(handle(r, byDay).get('mon'), { count: 3 })
  t.ok(handle(r, byDay).get('mon')?.constructor === Object, 'a map value that is an object comes back as an object')
})

t.test('snapshot - an empty backend gives a complete snapshot with no groups', async (t) => {
  const b = new HeapKeyedBackend([valueState<number>('v')], RANGE)
  const s = b.startSnapshot()
  t.equal(s.complete, true)
  t.same(s.groups, [])
  t.equal(b.serializeSome(0), true)
})

t.test('snapshot - serializeSome encodes in slices and reports when done', async (t) => {
  const v = valueState<number>('v')
  const b = new HeapKeyedBackend([v], RANGE)
  for (let g = 0; g <= 7; g++) {
    b.setCurrentKey(`k${g}`, g)
    handle(b, v).update(g)
  }
  const s = b.startSnapshot()
  t.equal(s.complete, false, 'startSnapshot only marks key groups')
  t.equal(s.groups.length, 0)
  t.equal(b.serializeSome(0), false, 'a zero budget still encodes one key group')
  t.equal(s.groups.length, 1)
  let calls = 1
  while (!b.serializeSome(0)) calls++
  t.equal(calls, 7, 'one key group per call with a zero budget')
  t.equal(s.complete, true)
  t.same(s.groups.map((g) => g.keyGroup), [0, 1, 2, 3, 4, 5, 6, 7])
})

t.test('snapshot - starting a snapshot finishes the one still being encoded', async (t) => {
  const v = valueState<number>('v')
  const b = new HeapKeyedBackend([v], RANGE)
  for (let g = 0; g <= 3; g++) {
    b.setCurrentKey(`k${g}`, g)
    handle(b, v).update(g)
  }
  const first = b.startSnapshot()
  b.serializeSome(0)
  const second = b.startSnapshot()
  t.equal(first.complete, true)
  t.equal(first.groups.length, 4)
  t.equal(second.complete, false)
  b.serializeSome(Infinity)
  t.equal(second.groups.length, 4)
})

t.test('snapshot - key groups restore into backends with other ranges (rescaling)', async (t) => {
  const { b, descriptors, keys, value } = fillAllKinds()
  const snapshot = snapshotNow(b)
  const low = restoreInto(new HeapKeyedBackend(descriptors, { start: 0, end: 3 }), snapshot)
  const high = restoreInto(new HeapKeyedBackend(descriptors, { start: 4, end: 7 }), snapshot)
  keys.forEach(([key, group], i) => {
    const owner = group <= 3 ? low : high
    owner.setCurrentKey(key, group)
    t.equal(handle(owner, value).value(), i + 1, `key ${String(key)} in group ${group}`)
  })
  t.equal(low.keyCount() + high.keyCount(), b.keyCount())
  t.throws(() => low.restoreGroup(5, snapshot.groups[0]!.data), RangeError, 'a key group outside the range is refused')
})

t.test('copy-on-write - writes after startSnapshot do not change the snapshot; live state sees them', async (t) => {
  const { b, descriptors, value, list, map, max, sum } = fillAllKinds()
  // A deep copy: live lists and maps are appended to in place.
  const before = structuredClone(Object.fromEntries(descriptors.map((d) => [d.name, dump(b, d.name)])))
  const snapshot = b.startSnapshot()
  // Every kind of write, on keys of every marked key group, before any group is encoded.
  b.setCurrentKey('a', 0)
  handle(b, value).update(100)
  handle(b, list).add('added')
  handle(b, map).put('p', 100)
  handle(b, max).add(1000)
  handle(b, sum).add(1000)
  b.setCurrentKey('c', 3)
  handle(b, value).clear()
  handle(b, list).addAll(['m', 'n'])
  handle(b, map).remove('p')
  handle(b, max).clear()
  b.setCurrentKey(42, 5)
  handle(b, list).update(['replaced'])
  handle(b, map).putAll([['r', 1]])
  handle(b, sum).clear()
  b.setCurrentKey(9n, 7)
  handle(b, list).clear()
  handle(b, map).clear()
  b.setCurrentKey('new', 6)
  handle(b, value).update(7)
  b.serializeSome(Infinity)
  t.equal(snapshot.complete, true)
  t.notOk(snapshot.groups.some((g) => g.keyGroup === 6), 'a key group that was empty at the snapshot is not in it')

  const restored = restoreInto(new HeapKeyedBackend(descriptors, RANGE), snapshot)
  for (const d of descriptors) t.same(dump(restored, d.name), before[d.name], `snapshot of ${d.name} is as it was at startSnapshot`)

  // Live state saw every write.
  b.setCurrentKey('a', 0)
  t.equal(handle(b, value).value(), 100)
  t.same(handle(b, list).get(), ['x0', 'y0', 'added'])
  t.equal(handle(b, map).get('p'), 100)
  t.equal(handle(b, max).get(), 1000)
  t.equal(handle(b, sum).get(), 10010)
  b.setCurrentKey('c', 3)
  t.equal(handle(b, value).value(), 0)
  t.same(handle(b, list).get(), ['x2', 'y2', 'm', 'n'])
  t.equal(handle(b, map).contains('p'), false)
  t.equal(handle(b, max).get(), undefined)
  b.setCurrentKey(42, 5)
  t.same(handle(b, list).get(), ['replaced'])
  t.equal(handle(b, map).get('r'), 1)
  t.equal(handle(b, sum).get(), undefined)
  b.setCurrentKey(9n, 7)
  t.same(handle(b, list).get(), [])
  t.equal(handle(b, map).isEmpty(), true)
})

t.test('copy-on-write - writes to a key group already encoded do not re-encode it', async (t) => {
  const v = valueState<number>('v')
  const b = new HeapKeyedBackend([v], RANGE)
  b.setCurrentKey('a', 0)
  handle(b, v).update(1)
  b.setCurrentKey('b', 1)
  handle(b, v).update(2)
  const s = b.startSnapshot()
  b.serializeSome(0) // encodes group 0 only
  b.setCurrentKey('a', 0)
  handle(b, v).update(10)
  b.setCurrentKey('b', 1)
  handle(b, v).update(20) // group 1 still marked: encoded now, with the old value
  handle(b, v).update(30)
  b.serializeSome(Infinity)
  t.equal(s.groups.length, 2, 'each key group is encoded exactly once')
  const r = restoreInto(new HeapKeyedBackend([v], RANGE), s)
  t.same(dump(r, 'v'), [['a', 1], ['b', 2]])
})

t.test('copy-on-write - an aggregator that updates its accumulator in place does not leak into the snapshot', async (t) => {
  // Aggregator.add returns the accumulator, so (as in Flink) it may modify and return it.
  const total = aggregatingState<number, number[], number>('total', {
    createAccumulator: () => [0],
    add: (acc, v) => {
      acc[0]! += v
      return acc
    },
    getResult: (acc) => acc[0]!,
  })
  const b = new HeapKeyedBackend([total], RANGE)
  b.setCurrentKey('a', 0)
  handle(b, total).add(5)
  const s = b.startSnapshot()
  handle(b, total).add(100)
  b.serializeSome(Infinity)
  t.equal(handle(b, total).get(), 105, 'live state has the new input')
  const r = restoreInto(new HeapKeyedBackend([total], RANGE), s)
  r.setCurrentKey('a', 0)
  t.equal(handle(r, total).get(), 5, 'the snapshot holds the accumulator as it was at startSnapshot')
})

t.test('copy-on-write - a reduce function that updates its first argument in place does not leak into the snapshot', async (t) => {
  // The same contract as Aggregator.add: reduce(a, b) returns the new value and may reuse a.
  const seen = reducingState<number[]>('seen', (a, b) => {
    a.push(...b)
    return a
  })
  const b = new HeapKeyedBackend([seen], RANGE)
  b.setCurrentKey('a', 0)
  handle(b, seen).add([1])
  handle(b, seen).add([2])
  const s = b.startSnapshot()
  handle(b, seen).add([3])
  b.serializeSome(Infinity)
  t.same(handle(b, seen).get(), [1, 2, 3], 'live state has the new input')
  const r = restoreInto(new HeapKeyedBackend([seen], RANGE), s)
  r.setCurrentKey('a', 0)
  t.same(handle(r, seen).get(), [1, 2], 'the snapshot holds the value as it was at startSnapshot')
})

t.test('serde - a custom serde per state encodes snapshot values and round-trips', async (t) => {
  let encoded = 0
  let decoded = 0
  const counting: Serde<unknown> = {
    encode: (v) => (encoded++, json.encode(v)),
    decode: (b) => (decoded++, json.decode(b)),
  }
  const profile = valueState<{ name: string }>('profile', { serde: counting as Serde<{ name: string }> })
  const tags = listState<string>('tags', { serde: counting as Serde<string> })
  const scores = mapState<string, { best: number }>('scores', { serde: counting as Serde<{ best: number }> })
  const plain = valueState<number>('plain')
  const descriptors = [profile, tags, scores, plain]
  const b = new HeapKeyedBackend(descriptors, RANGE)
  b.setCurrentKey('u', 4)
  handle(b, profile).update({ name: 'ada' })
  handle(b, tags).addAll(['a', 'b'])
  handle(b, scores).put('chess', { best: 3 })
  handle(b, plain).update(1)
  const s = snapshotNow(b)
  t.equal(encoded, 4, 'one encode per value, per list element, per map value')

  const states = decodeKeyedChunk(s.groups[0]!.data)
  const byName = new Map(states.map((x) => [x.name, x.entries]))
  const text = (bytes: unknown) => new TextDecoder().decode(bytes as Uint8Array)
  t.equal(text(byName.get('profile')![1]), '{"name":"ada"}', 'value state: the serde bytes')
  t.same((byName.get('tags')![1] as unknown[]).map(text), ['"a"', '"b"'], 'list state: each element')
  t.equal(text((byName.get('scores')![1] as Map<string, unknown>).get('chess')), '{"best":3}', 'map state: each value')
  t.equal(byName.get('plain')![1], 1, 'a state without serde uses the default encoding')

  const r = restoreInto(new HeapKeyedBackend(descriptors, RANGE), s)
  t.equal(decoded, 4)
  r.setCurrentKey('u', 4)
  t.strictSame(handle(r, profile).value(), { name: 'ada' })
  t.strictSame(handle(r, tags).get(), ['a', 'b'])
  t.strictSame(handle(r, scores).get('chess'), { best: 3 })
  t.equal(handle(r, plain).value(), 1)
})

t.test('serde - reducing and aggregating states encode their value and accumulator with their serde', async (t) => {
  const max = reducingState<number>('max', (a, b) => Math.max(a, b), { serde: json as Serde<number> })
  const avg = aggregatingState('avg', average, { serde: json as Serde<{ sum: number; n: number }> })
  const b = new HeapKeyedBackend([max, avg], RANGE)
  b.setCurrentKey('k', 1)
  handle(b, max).add(4)
  handle(b, avg).add(1)
  handle(b, avg).add(2)
  const s = snapshotNow(b)
  const entries = new Map(decodeKeyedChunk(s.groups[0]!.data).map((x) => [x.name, x.entries]))
  t.equal(new TextDecoder().decode(entries.get('avg')![1] as Uint8Array), '{"sum":3,"n":2}')
  const r = restoreInto(new HeapKeyedBackend([max, avg], RANGE), s)
  r.setCurrentKey('k', 1)
  t.equal(handle(r, max).get(), 4)
  t.equal(handle(r, avg).get(), 1.5)
})

t.test('restore - a chunk with a state the backend does not declare throws naming the state', async (t) => {
  const v = valueState<number>('v')
  const b = new HeapKeyedBackend([v, listState<number>('l')], RANGE)
  b.setCurrentKey('a', 2)
  handle(b, v).update(1)
  const s = snapshotNow(b)
  const other = new HeapKeyedBackend([valueState<number>('w')], RANGE)
  t.throws(() => other.restoreGroup(2, s.groups[0]!.data), { message: /state "v", which the operator does not declare/ })
})

t.test('restore - a chunk with the same state name but another kind throws naming both kinds', async (t) => {
  const data = encodeKeyedChunk([{ name: 'x', kind: 'list', entries: ['a', [1, 2]] }])
  const b = new HeapKeyedBackend([valueState<number>('x')], RANGE)
  t.throws(() => b.restoreGroup(0, data), { message: /state "x" is value state in the job but list state in the snapshot/ })
  t.throws(() => b.restoreGroup(0, new Uint8Array([1, 2, 3])), 'bytes that are not a keyed chunk are refused')
})

t.test('descriptors - factories throw JobDefinitionError on malformed definitions', async (t) => {
  const bad = (fn: () => unknown, message: RegExp, what: string): void => {
    t.throws(fn, { name: 'JobDefinitionError', message }, what)
    t.throws(fn, JobDefinitionError, `${what}: a JobDefinitionError`)
  }
  bad(() => valueState(''), /valueState needs a non-empty name/, 'empty value state name')
  bad(() => listState(''), /listState needs a non-empty name/, 'empty list state name')
  bad(() => mapState(''), /mapState needs a non-empty name/, 'empty map state name')
  bad(() => valueState(undefined as unknown as string), /non-empty name/, 'missing name')
  bad(() => reducingState('', (a: number) => a), /reducingState needs a non-empty name/, 'empty reducing name')
  bad(() => reducingState<number>('r', undefined as unknown as (a: number, b: number) => number), /state r: reducingState needs a reduce function/, 'missing reduce')
  for (const missing of ['createAccumulator', 'add', 'getResult'] as const) {
    const agg: Record<string, unknown> = { createAccumulator: () => 0, add: (a: number) => a, getResult: (a: number) => a }
    delete agg[missing]
    bad(() => aggregatingState('g', agg as unknown as Aggregator<number, number, number>), new RegExp(`state g: aggregatingState needs ${missing}\\(\\)`), `aggregator without ${missing}`)
  }
  bad(() => aggregatingState('g', undefined as unknown as Aggregator<number, number, number>), /aggregatingState needs createAccumulator/, 'no aggregator')
  bad(() => valueState('s', { serde: { encode: (v: number) => new Uint8Array([v]) } as unknown as Serde<number> }), /state s: serde needs encode\(value\) and decode\(bytes\)/, 'serde without decode')
  bad(() => listState('s', { serde: { decode: () => 1 } as unknown as Serde<number> }), /serde needs encode/, 'serde without encode')
  t.ok(Object.isFrozen(valueState('ok')), 'descriptors are frozen')
})
