/**
 * Key groups (docs/architecture.md section 3): the unit of keyed state and of rescaling. These formulas are
 * part of the snapshot format; changing any of them makes old snapshots unreadable.
 */
import type { Key } from '../../persistence/keyed-chunk.ts'

/** The murmur3 seed for key hashing ("WEIR" in ASCII). Fixed forever: it is part of the snapshot format. */
export const KEY_HASH_SEED = 0x57454952

/** The default number of key groups of a job. */
export const DEFAULT_MAX_PARALLELISM = 128

/** The keys Weir can partition by (defined with the chunk format that stores them). */
export type { Key } from '../../persistence/keyed-chunk.ts'

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, C2)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

function finish(h: number, tail: number, tailBytes: number, length: number): number {
  if (tailBytes > 0) {
    tail = Math.imul(tail, C1)
    tail = (tail << 15) | (tail >>> 17)
    h ^= Math.imul(tail, C2)
  }
  h ^= length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** murmur3 (x86, 32-bit) of bytes, as an unsigned integer. */
export function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  let h = seed | 0
  const blocks = bytes.length & ~3
  for (let i = 0; i < blocks; i += 4) {
    h = mixBlock(h, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))
  }
  let tail = 0
  const tailBytes = bytes.length & 3
  for (let i = tailBytes - 1; i >= 0; i--) tail = (tail << 8) | bytes[blocks + i]!
  return finish(h, tail, tailBytes, bytes.length)
}

const encoder = new TextEncoder()
let scratch = new Uint8Array(256)

/**
 * murmur3 of a string's UTF-8 bytes. ASCII strings (the common key) are hashed straight from
 * their char codes, without encoding them first: this runs once per record.
 */
export function murmur3String(s: string, seed: number): number {
  const n = s.length
  let h = seed | 0
  let i = 0
  for (; i + 4 <= n; i += 4) {
    const a = s.charCodeAt(i)
    const b = s.charCodeAt(i + 1)
    const c = s.charCodeAt(i + 2)
    const d = s.charCodeAt(i + 3)
    if ((a | b | c | d) >= 0x80) return murmur3Utf8(s, seed)
    h = mixBlock(h, a | (b << 8) | (c << 16) | (d << 24))
  }
  let tail = 0
  const tailBytes = n - i
  for (let j = n - 1; j >= i; j--) {
    const c = s.charCodeAt(j)
    if (c >= 0x80) return murmur3Utf8(s, seed)
    tail = (tail << 8) | c
  }
  return finish(h, tail, tailBytes, n)
}

function murmur3Utf8(s: string, seed: number): number {
  if (scratch.length < s.length * 3) scratch = new Uint8Array(s.length * 3)
  const { written } = encoder.encodeInto(s, scratch)
  return murmur3Bytes(scratch.subarray(0, written), seed)
}

/** The hash of a key: its UTF-8 bytes for strings, those of its decimal form for numbers and bigints. */
export function hashKey(key: Key): number {
  return murmur3String(typeof key === 'string' ? key : String(key), KEY_HASH_SEED)
}

/** `murmur3(key) mod maxParallelism`. */
export function keyGroupOf(key: Key, maxParallelism: number): number {
  return hashKey(key) % maxParallelism
}

/** The instance (of `parallelism`) that owns a key group: `floor(keyGroup * p / maxP)`. */
export function instanceOfKeyGroup(keyGroup: number, parallelism: number, maxParallelism: number): number {
  return Math.floor((keyGroup * parallelism) / maxParallelism)
}

/** An inclusive range of key groups. */
export interface KeyGroupRange {
  start: number
  end: number
}

/** Instance `i` of `p` owns `[ceil(i * maxP / p), ceil((i + 1) * maxP / p) - 1]`. */
export function keyGroupRange(instance: number, parallelism: number, maxParallelism: number): KeyGroupRange {
  return {
    start: Math.ceil((instance * maxParallelism) / parallelism),
    end: Math.ceil(((instance + 1) * maxParallelism) / parallelism) - 1,
  }
}

/** True if `value` can be used as a key. */
export function isKey(value: unknown): value is Key {
  const t = typeof value
  return t === 'string' || t === 'bigint' || (t === 'number' && Number.isFinite(value as number))
}
