/**
 * The sending side of an edge: runs the chained stateless transforms, partitions records over
 * the target instances and batches them per channel.
 */
import type { BarrierItem, EndItem, LocalChannel } from './channel.ts'
import type { EdgeSpec, Transform } from './job.ts'
import { KeySelectorError } from './errors.ts'
import { hashKey, instanceOfKeyGroup, isKey, type Key } from './key-groups.ts'

export class EdgeOutput {
  /** Runs the transforms, then partitions. */
  readonly emit: (record: unknown) => void
  private readonly records: unknown[][]
  private readonly keys: Key[][]
  private readonly groups: number[][]
  /** Records buffered per target; the arrays are allocated at full batch size up front. */
  private readonly counts: number[]
  private next = 0

  constructor(
    readonly edge: EdgeSpec,
    /** One channel per target instance; a forward edge has only its own instance's. */
    private readonly targets: readonly LocalChannel[],
    private readonly maxParallelism: number,
    private readonly batchSize: number,
  ) {
    const n = targets.length
    const hashed = edge.partitioning === 'hash'
    this.records = Array.from({ length: n }, () => new Array<unknown>(batchSize))
    this.keys = Array.from({ length: n }, () => (hashed ? new Array<Key>(batchSize) : []))
    this.groups = Array.from({ length: n }, () => (hashed ? new Array<number>(batchSize) : []))
    this.counts = new Array<number>(n).fill(0)
    const partition =
      edge.partitioning === 'hash'
        ? this.hashed(edge.keySelector!)
        : edge.partitioning === 'forward'
          ? (r: unknown) => this.add(0, r)
          : (r: unknown) => {
              this.add(this.next, r)
              this.next = this.next + 1 === n ? 0 : this.next + 1
            }
    this.emit = edge.transforms.reduceRight(chain, partition)
  }

  private hashed(selector: (r: unknown) => Key): (r: unknown) => void {
    const maxP = this.maxParallelism
    const p = this.targets.length
    return (r) => {
      const key = selector(r)
      if (typeof key !== 'string' && !isKey(key)) throw new KeySelectorError(this.edge.to, key)
      const group = hashKey(key) % maxP
      const t = p === 1 ? 0 : instanceOfKeyGroup(group, p, maxP)
      const i = this.counts[t]!
      this.records[t]![i] = r
      this.keys[t]![i] = key
      this.groups[t]![i] = group
      if ((this.counts[t] = i + 1) === this.batchSize) this.flushTo(t)
    }
  }

  private add(t: number, r: unknown): void {
    const i = this.counts[t]!
    this.records[t]![i] = r
    if ((this.counts[t] = i + 1) === this.batchSize) this.flushTo(t)
  }

  private flushTo(t: number): void {
    const n = this.counts[t]!
    if (n === 0) return
    const size = this.batchSize
    const records = this.records[t]!
    if (n < size) records.length = n
    this.records[t] = new Array<unknown>(size)
    this.counts[t] = 0
    if (this.edge.partitioning !== 'hash') {
      this.targets[t]!.push({ type: 'records', records, keys: undefined, groups: undefined })
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
    this.targets[t]!.push({ type: 'records', records, keys, groups })
  }

  /** Sends every buffered record. */
  flush(): void {
    for (let t = 0; t < this.targets.length; t++) this.flushTo(t)
  }

  /** Sends buffered records, then a barrier or end to every target, in order. */
  broadcast(item: BarrierItem | EndItem): void {
    this.flush()
    for (const c of this.targets) c.push(item)
  }

  /** True if every target can take more. */
  hasCredit(): boolean {
    for (const c of this.targets) if (!c.hasCredit()) return false
    return true
  }
}

function chain(next: (r: unknown) => void, t: Transform): (r: unknown) => void {
  switch (t.kind) {
    case 'map': {
      const fn = t.fn
      return (r) => next(fn(r))
    }
    case 'filter': {
      const fn = t.fn
      return (r) => {
        if (fn(r)) next(r)
      }
    }
    case 'flatMap': {
      const fn = t.fn
      return (r) => fn(r, next)
    }
  }
}
