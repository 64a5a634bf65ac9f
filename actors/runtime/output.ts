/**
 * The sending side of an edge: runs the chained stateless transforms, partitions records over
 * the target instances and batches them per channel.
 */
import type { BarrierItem, Channel, EndItem, WatermarkItem } from './channel.ts'
import type { EdgeSpec, Transform } from '../api/graph.ts'
import { asyncResultError, KeySelectorError, UserCodeError } from '../errors.ts'
import { WeirError } from '../../persistence/errors.ts'
import { hashKey, instanceOfKeyGroup, isKey, type Key } from '../state/key-groups.ts'

export class EdgeOutput {
  /** Runs the transforms, then partitions. */
  readonly emit: (record: unknown) => void
  private readonly records: unknown[][]
  private readonly keys: Key[][]
  private readonly groups: number[][]
  /** Records buffered per target; the arrays are allocated at full batch size up front. */
  private readonly counts: number[]
  private next = 0
  /** Event times per target, only when `timed`. */
  private readonly stamps: number[][]
  /**
   * The event time of the records emitted now: the sending instance sets it before it emits
   * (docs/architecture.md section 17). Read only when the edge is `timed`.
   */
  timestamp = 0
  /** Records sent on so far (after the chained transforms), for `weir status`. */
  sent = 0

  constructor(
    readonly edge: EdgeSpec,
    /** One channel per target instance; a forward edge has only its own instance's. */
    private readonly targets: readonly Channel[],
    private readonly maxParallelism: number,
    private readonly batchSize: number,
    /** The index of the sending instance, for errors of the chained transforms. */
    private readonly sender = 0,
    /** The stream carries event times: batches get `timestamps`. */
    readonly timed = false,
  ) {
    const n = targets.length
    const hashed = edge.partitioning === 'hash'
    this.records = Array.from({ length: n }, () => new Array<unknown>(batchSize))
    this.keys = Array.from({ length: n }, () => (hashed ? new Array<Key>(batchSize) : []))
    this.groups = Array.from({ length: n }, () => (hashed ? new Array<number>(batchSize) : []))
    this.counts = new Array<number>(n).fill(0)
    this.stamps = Array.from({ length: n }, () => (timed ? new Array<number>(batchSize) : []))
    const partition =
      edge.partitioning === 'hash'
        ? this.hashed(edge.keySelector!)
        : edge.partitioning === 'forward'
          ? (r: unknown) => this.add(0, r)
          : edge.partitioning === 'broadcast'
            ? (r: unknown) => {
                // Every record to every instance (docs/architecture.md section 16).
                for (let t = 0; t < n; t++) this.add(t, r)
              }
            : (r: unknown) => {
                this.add(this.next, r)
                this.next = this.next + 1 === n ? 0 : this.next + 1
              }
    this.emit = edge.transforms.reduceRight((next: (r: unknown) => void, t: Transform) => chain(next, t, sender), partition)
  }

  private hashed(selector: (r: unknown) => Key): (r: unknown) => void {
    const maxP = this.maxParallelism
    const p = this.targets.length
    const into = `keyBy into ${this.edge.to}`
    const sender = this.sender
    return (r) => {
      let key: Key
      try {
        key = selector(r)
      } catch (err) {
        throw new UserCodeError(into, sender, undefined, err)
      }
      if (typeof key !== 'string' && !isKey(key)) throw asyncResultError(key, into, sender, undefined) ?? new KeySelectorError(this.edge.to, key)
      const group = hashKey(key) % maxP
      const t = p === 1 ? 0 : instanceOfKeyGroup(group, p, maxP)
      const i = this.counts[t]!
      this.records[t]![i] = r
      this.keys[t]![i] = key
      this.groups[t]![i] = group
      if (this.timed) this.stamps[t]![i] = this.timestamp
      if ((this.counts[t] = i + 1) === this.batchSize) this.flushTo(t)
    }
  }

  private add(t: number, r: unknown): void {
    const i = this.counts[t]!
    this.records[t]![i] = r
    if (this.timed) this.stamps[t]![i] = this.timestamp
    if ((this.counts[t] = i + 1) === this.batchSize) this.flushTo(t)
  }

  private flushTo(t: number): void {
    const n = this.counts[t]!
    if (n === 0) return
    this.sent += n
    const size = this.batchSize
    const records = this.records[t]!
    if (n < size) records.length = n
    this.records[t] = new Array<unknown>(size)
    this.counts[t] = 0
    let timestamps: number[] | undefined
    if (this.timed) {
      timestamps = this.stamps[t]!
      if (n < size) timestamps.length = n
      this.stamps[t] = new Array<number>(size)
    }
    if (this.edge.partitioning !== 'hash') {
      this.targets[t]!.push(timestamps === undefined ? { type: 'records', records, keys: undefined, groups: undefined } : { type: 'records', records, keys: undefined, groups: undefined, timestamps })
      return
    }
    const keys = this.keys[t]!
    const groups = this.groups[t]!
    if (n < size) {
      keys.length = n
      groups.length = n
    }
    this.keys[t] = new Array<Key>(size)
    this.groups[t] = new Array<number>(size)
    this.targets[t]!.push(timestamps === undefined ? { type: 'records', records, keys, groups } : { type: 'records', records, keys, groups, timestamps })
  }

  /** Sends every buffered record. */
  flush(): void {
    for (let t = 0; t < this.targets.length; t++) this.flushTo(t)
  }

  /** Sends buffered records, then a barrier, end or watermark to every target, in order. */
  broadcast(item: BarrierItem | EndItem | WatermarkItem): void {
    this.flush()
    for (const c of this.targets) c.push(item)
  }

  /** True if every target can take more. */
  hasCredit(): boolean {
    for (const c of this.targets) if (!c.hasCredit()) return false
    return true
  }
}

/**
 * Wraps `next` with one transform. A throw or a returned promise is reported as the transform's
 * (its name is its operator name in errors); the checks cost a type test per record.
 */
function chain(next: (r: unknown) => void, t: Transform, sender: number): (r: unknown) => void {
  const fail = (err: unknown): never => {
    throw err instanceof WeirError ? err : new UserCodeError(t.name, sender, undefined, err)
  }
  const check = (out: unknown): void => {
    const error = asyncResultError(out, t.name, sender, undefined)
    if (error !== undefined) throw error
  }
  switch (t.kind) {
    case 'map': {
      const fn = t.fn
      return (r) => {
        let out: unknown
        try {
          out = fn(r)
        } catch (err) {
          fail(err)
        }
        if (typeof out === 'object' && out !== null) check(out)
        next(out)
      }
    }
    case 'filter': {
      const fn = t.fn
      return (r) => {
        let keep: unknown
        try {
          keep = fn(r)
        } catch (err) {
          fail(err)
        }
        if (keep === true) next(r)
        else if (keep) {
          check(keep)
          next(r)
        }
      }
    }
    case 'flatMap': {
      const fn = t.fn
      return (r) => {
        let out: unknown
        try {
          out = fn(r, next)
        } catch (err) {
          fail(err)
        }
        if (out !== undefined) check(out)
      }
    }
  }
}
