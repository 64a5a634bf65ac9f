/**
 * Checks of what user code keeps in keyed state: whether the default serde (CBOR) can write a
 * value and read it back as it was, and, in strict mode, freezing what state handles return so
 * a change in place (which a snapshot would not see, or would see too early) throws where it is
 * made.
 */

/**
 * What in `value` the default serde cannot round-trip, in words with where it is (`a function at
 * .onClick`, `an instance of class Counter`, `a cycle at .parent`), or undefined when the value
 * is plain data: primitives (not symbols), objects without a class, arrays, Maps, Sets, Dates,
 * bigints, typed arrays and ArrayBuffers.
 */
export function unserializableIn(value: unknown): string | undefined {
  const t = typeof value
  if (t !== 'object' && t !== 'function' && t !== 'symbol') return undefined
  if (value === null) return undefined
  // Fast walk without tracking ancestors; only a value nested deeper than any plain data would
  // be (a cycle, most likely) is walked again, tracking them to find the cycle.
  let found = problemIn(value, undefined, 0)
  if (found === TOO_DEEP) found = problemIn(value, [], 0)
  if (found === undefined) return undefined
  return found.path.length === 0 ? found.what : `${found.what} at ${found.path.reverse().join('')}`
}

/** A problem and its path, innermost segment first (built only when something is found). */
interface Found {
  what: string
  path: string[]
}

/** Depth at which the fast walk gives up and the walk tracking ancestors takes over. */
const MAX_FAST_DEPTH = 200
const TOO_DEEP: Found = { what: 'a value nested too deep', path: [] }

function problemIn(value: unknown, ancestors: object[] | undefined, depth: number): Found | undefined {
  const t = typeof value
  if (t === 'function') return { what: 'a function', path: [] }
  if (t === 'symbol') return { what: 'a symbol', path: [] }
  if (t !== 'object' || value === null) return undefined
  const o = value as object
  const proto: unknown = Object.getPrototypeOf(o)
  // Plain objects and arrays first: nearly every value is one.
  if (ancestors === undefined && depth > MAX_FAST_DEPTH) return TOO_DEEP
  if (proto === Object.prototype || proto === null) return inObject(o, ancestors, depth + 1)
  if (proto === Array.prototype) return inArray(o as unknown[], ancestors, depth + 1)
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer || proto === Date.prototype || proto === RegExp.prototype) return undefined
  if (proto === Map.prototype || proto === Set.prototype) return inCollection(o as Map<unknown, unknown> | Set<unknown>, ancestors, depth + 1)
  const name = (o as { constructor?: { name?: unknown } }).constructor?.name
  return { what: `an instance of class ${typeof name === 'string' && name !== '' ? name : '(anonymous)'}`, path: [] }
}

function enter(o: object, ancestors: object[] | undefined): Found | undefined {
  if (ancestors === undefined) return undefined
  if (ancestors.includes(o)) return { what: 'a cycle', path: [] }
  ancestors.push(o)
  return undefined
}

function inObject(o: object, ancestors: object[] | undefined, depth: number): Found | undefined {
  const cycle = enter(o, ancestors)
  if (cycle !== undefined) return cycle
  for (const k in o) {
    const found = problemIn((o as Record<string, unknown>)[k], ancestors, depth)
    if (found !== undefined) {
      if (found !== TOO_DEEP) found.path.push(`.${k}`)
      return found
    }
  }
  ancestors?.pop()
  if (Object.getOwnPropertySymbols(o).length > 0) return { what: 'a symbol-keyed property', path: [] }
  return undefined
}

function inArray(a: unknown[], ancestors: object[] | undefined, depth: number): Found | undefined {
  const cycle = enter(a, ancestors)
  if (cycle !== undefined) return cycle
  for (let i = 0; i < a.length; i++) {
    const found = problemIn(a[i], ancestors, depth)
    if (found !== undefined) {
      if (found !== TOO_DEEP) found.path.push(`[${i}]`)
      return found
    }
  }
  ancestors?.pop()
  return undefined
}

function inCollection(c: Map<unknown, unknown> | Set<unknown>, ancestors: object[] | undefined, depth: number): Found | undefined {
  const cycle = enter(c, ancestors)
  if (cycle !== undefined) return cycle
  let found: Found | undefined
  if (c instanceof Map) {
    for (const [k, v] of c) {
      found = problemIn(k, ancestors, depth)
      if (found !== undefined) {
        if (found !== TOO_DEEP) found.path.push('.keys()')
        return found
      }
      found = problemIn(v, ancestors, depth)
      if (found !== undefined) {
        if (found !== TOO_DEEP) found.path.push(`.get(${label(k)})`)
        return found
      }
    }
  } else {
    for (const v of c) {
      found = problemIn(v, ancestors, depth)
      if (found !== undefined) {
        if (found !== TOO_DEEP) found.path.push('.values()')
        return found
      }
    }
  }
  ancestors?.pop()
  return undefined
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
