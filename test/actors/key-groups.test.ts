import t from 'tap'
import {
  hashKey,
  instanceOfKeyGroup,
  isKey,
  keyGroupOf,
  keyGroupRange,
  murmur3Bytes,
  murmur3String,
} from '../../actors/state/key-groups.ts'

const utf8 = (s: string) => new TextEncoder().encode(s)

t.test('murmur3 - matches the reference vectors of murmur3_x86_32', async (t) => {
  t.equal(murmur3Bytes(new Uint8Array(0), 0), 0)
  t.equal(murmur3Bytes(new Uint8Array(0), 1), 0x514e28b7)
  t.equal(murmur3Bytes(new Uint8Array(0), 0xffffffff), 0x81f16f39)
  t.equal(murmur3Bytes(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0), 0x76293b50)
  t.equal(murmur3Bytes(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0), 0xf55b516b)
  t.equal(murmur3Bytes(new Uint8Array([0x21, 0x43, 0x65]), 0), 0x7e4a8634)
  t.equal(murmur3Bytes(new Uint8Array([0x21, 0x43]), 0), 0xa0f7b07a)
  t.equal(murmur3Bytes(new Uint8Array([0x21]), 0), 0x72661cf4)
  t.equal(murmur3Bytes(utf8('Hello, world!'), 1234), 0xfaf6cdb3)
  t.equal(murmur3Bytes(utf8('The quick brown fox jumps over the lazy dog'), 0x9747b28c), 0x2fa826cd)
})

t.test('murmur3 - hashing a string equals hashing its UTF-8 bytes, ASCII or not', async (t) => {
  for (const s of ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'account-42', 'zürich', '日本語キー', 'emoji 😀 key', 'x'.repeat(300) + 'é']) {
    t.equal(murmur3String(s, 7), murmur3Bytes(utf8(s), 7), s)
  }
})

t.test('key groups - numbers hash as their decimal form and land in [0, maxP)', async (t) => {
  t.equal(hashKey(42), hashKey('42'))
  t.equal(hashKey(42n), hashKey('42'))
  for (let i = 0; i < 1000; i++) {
    const g = keyGroupOf(`k${i}`, 128)
    t.ok(g >= 0 && g < 128 && Number.isInteger(g))
  }
})

t.test('key groups - the formula is stable (it is part of the snapshot format)', async (t) => {
  // Literal vectors: comparing with murmur3Bytes(...) % 128 would only restate the code, and would
  // not fail if both moved together.
  const keys = ['a', 'account-1', 'account-2', 'zürich']
  t.same(keys.map((k) => hashKey(k)), [632983522, 2239885961, 1805504397, 945792780], 'hashKey: murmur3_x86_32 of the UTF-8 bytes, seed 0x57454952')
  t.same(keys.map((k) => murmur3Bytes(utf8(k), 0x57454952)), [632983522, 2239885961, 1805504397, 945792780], 'which is murmur3 with the seed WEIR')
  t.same(keys.map((k) => keyGroupOf(k, 128)), [98, 9, 13, 12], 'key groups at maxParallelism 128')
  t.same([keyGroupOf(42, 128), keyGroupOf('k0', 128), keyGroupOf('k1', 128)], [95, 33, 17])
})

t.test('key groups - ranges partition [0, maxP) and agree with instanceOfKeyGroup', async (t) => {
  for (const maxP of [1, 2, 7, 128, 129, 300]) {
    for (let p = 1; p <= Math.min(maxP, 40); p++) {
      let next = 0
      for (let i = 0; i < p; i++) {
        const r = keyGroupRange(i, p, maxP)
        if (r.start !== next) t.fail(`gap at maxP=${maxP} p=${p} i=${i}`)
        for (let g = r.start; g <= r.end; g++) {
          if (instanceOfKeyGroup(g, p, maxP) !== i) t.fail(`kg ${g} maxP=${maxP} p=${p}`)
        }
        next = r.end + 1
      }
      if (next !== maxP) t.fail(`ranges end at ${next} for maxP=${maxP} p=${p}`)
    }
  }
  t.same(keyGroupRange(0, 2, 128), { start: 0, end: 63 })
  t.same(keyGroupRange(1, 2, 128), { start: 64, end: 127 })
  t.same(keyGroupRange(1, 3, 128), { start: 43, end: 85 })
})

t.test('key groups - only strings, finite numbers and bigints are keys', async (t) => {
  t.ok(isKey('a'))
  t.ok(isKey(1))
  t.ok(isKey(1n))
  t.notOk(isKey(NaN))
  t.notOk(isKey({}))
  t.notOk(isKey(undefined))
  t.notOk(isKey(null))
})
