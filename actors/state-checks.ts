/**
 * Checks of what user code keeps in keyed state: whether the default serde (CBOR) can write a
 * value and read it back as it was, and, in strict mode, freezing what state handles return so
 * a change in place (which a snapshot would not see, or would see too early) throws where it is
 * made.
 */

/** Classes whose instances CBOR (cbor-x) writes and reads back as the same class. */
const PLAIN_CLASSES: readonly unknown[] = [Object.prototype, Array.prototype, Map.prototype, Set.prototype, Date.prototype, RegExp.prototype]

/**
 * What in `value` the default serde cannot round-trip, in words with where it is (`a function at
 * .onClick`, `an instance of class Counter`, `a cycle at .parent`), or undefined when the value
 * is plain data: primitives (not symbols), objects without a class, arrays, Maps, Sets, Dates,
 * bigints, typed arrays and ArrayBuffers.
 */
export function unserializableIn(value: unknown): string | undefined {
  const t = typeof value
  if (t === 'function') return 'a function'
  if (t === 'symbol') return 'a symbol'
  if (t !== 'object' || value === null) return undefined
  return walk(value as object, [], '')
}

function walk(value: object, ancestors: object[], path: string): string | undefined {
  const at = path === '' ? '' : ` at ${path}`
  if (ancestors.includes(value)) return `a cycle${at}`
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return undefined
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== null && !PLAIN_CLASSES.includes(proto)) {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name
    return `an instance of class ${typeof name === 'string' && name !== '' ? name : '(anonymous)'}${at}`
  }
  ancestors.push(value)
  try {
    if (value instanceof Map) {
      for (const [k, v] of value) {
        const found = child(k, ancestors, `${path}.keys()`) ?? child(v, ancestors, `${path}.get(${label(k)})`)
        if (found !== undefined) return found
      }
    } else if (value instanceof Set) {
      for (const v of value) {
        const found = child(v, ancestors, `${path}.values()`)
        if (found !== undefined) return found
      }
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const found = child(value[i], ancestors, `${path}[${i}]`)
        if (found !== undefined) return found
      }
    } else if (!(value instanceof Date) && !(value instanceof RegExp)) {
      for (const k of Object.keys(value)) {
        const found = child((value as Record<string, unknown>)[k], ancestors, `${path}.${k}`)
        if (found !== undefined) return found
      }
      if (Object.getOwnPropertySymbols(value).length > 0) return `a symbol-keyed property${at}`
    }
    return undefined
  } finally {
    ancestors.pop()
  }
}

function child(v: unknown, ancestors: object[], path: string): string | undefined {
  const t = typeof v
  if (t === 'function') return `a function at ${path}`
  if (t === 'symbol') return `a symbol at ${path}`
  if (t !== 'object' || v === null) return undefined
  return walk(v as object, ancestors, path)
}

function label(k: unknown): string {
  return typeof k === 'string' ? JSON.stringify(k) : typeof k === 'object' && k !== null ? '{...}' : String(k)
}

const LOCKED_MAP = ['set', 'delete', 'clear'] as const
const LOCKED_SET = ['add', 'delete', 'clear'] as const

function refuse(this: unknown): never {
  throw new TypeError('state values are read-only in strict mode: change a copy and write it back with update()/put()/add()')
}

/**
 * Freezes `value` and everything it holds, in place, and returns it. Maps and Sets get
 * throwing `set`/`add`/`delete`/`clear`; typed arrays cannot be frozen and are left as they are.
 * Frozen values are skipped, so freezing what was frozen before costs one check.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value) || ArrayBuffer.isView(value)) return value
  if (value instanceof Map) {
    for (const m of LOCKED_MAP) Object.defineProperty(value, m, { value: refuse })
    for (const [k, v] of value) {
      deepFreeze(k)
      deepFreeze(v)
    }
  } else if (value instanceof Set) {
    for (const m of LOCKED_SET) Object.defineProperty(value, m, { value: refuse })
    for (const v of value) deepFreeze(v)
  }
  Object.freeze(value)
  for (const k of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[k])
  return value
}
