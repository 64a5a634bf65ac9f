/**
 * In-process channels (docs/architecture.md section 5): one FIFO queue per (sender instance, receiver
 * instance) pair of an edge. Records travel in batches; barriers and end-of-input travel in
 * band, in order with them. The NATS transport implements the same items over the wire.
 */
import type { Key } from './key-groups.ts'

/** A batch of records. On hash edges the sender already computed each record's key and key group. */
export interface RecordBatch {
  type: 'records'
  records: unknown[]
  keys: Key[] | undefined
  groups: number[] | undefined
  /** Event times of the records, only on streams with event time (docs/architecture.md section 17). */
  timestamps?: number[] | undefined
}

/**
 * The sender's watermark (docs/architecture.md section 17): no record with a timestamp <= `time`
 * follows on this channel. `idle`: the sender is idle and does not hold the receiver's watermark
 * back until it sends records or a watermark without `idle`.
 */
export interface WatermarkItem {
  type: 'watermark'
  time: number
  idle?: boolean
}

/** Checkpoint barrier `id` (a Chandy-Lamport marker). */
export interface BarrierItem {
  type: 'barrier'
  id: number
}

/** The sender will send nothing more. */
export interface EndItem {
  type: 'end'
}

export type ChannelItem = RecordBatch | BarrierItem | EndItem | WatermarkItem

/** A FIFO queue of items with a soft capacity: a sender stops while its receiver is full. */
export class LocalChannel {
  private items: ChannelItem[] = []
  private head = 0

  constructor(
    /** Items the receiver accepts before the sender must wait (credit, section 5). */
    readonly capacity: number,
  ) {}

  get length(): number {
    return this.items.length - this.head
  }

  hasCredit(): boolean {
    return this.items.length - this.head < this.capacity
  }

  push(item: ChannelItem): void {
    this.items.push(item)
  }

  shift(): ChannelItem | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]!
    this.items[this.head++] = undefined as unknown as ChannelItem
    // Compact now and then instead of Array.shift per item, which is O(n).
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}
