/**
 * In-process channels (docs/architecture.md section 5): one FIFO queue per (sender instance, receiver
 * instance) pair of an edge. Records travel in batches; barriers and end-of-input travel in
 * band, in order with them. The NATS transport implements the same items over the wire.
 */
import type { Key } from '../state/key-groups.ts'

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

/**
 * A channel as its instances see it (the transport seam, docs/architecture.md section 21): the
 * sender pushes while `hasCredit()`, the receiver shifts. An in-process channel is both ends in
 * one object; across processes each end is its own object (cluster/remote-channel.ts), the
 * sender's `shift` and the receiver's `push` are never called.
 */
export interface Channel {
  /** Items waiting for the receiver (0 on the sending end of a remote channel). */
  readonly length: number
  /** True while the receiver has granted room for more items. */
  hasCredit(): boolean
  push(item: ChannelItem): void
  shift(): ChannelItem | undefined
}

/** A FIFO queue of items with a soft capacity: a sender stops while its receiver is full. */
export class LocalChannel implements Channel {
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

/** Which channel: of edge `edge` (records) or of send edge `edge` (messages), between two instances. */
export interface ChannelAddress {
  kind: 'records' | 'messages'
  /** Index in `graph.edges`, or in `sendEdges(graph)` for messages. */
  edge: number
  from: string
  fromIndex: number
  to: string
  toIndex: number
}

/**
 * The instances of a job that run in this process, and the ends of channels to the others: a
 * cluster node runs part of a job (cluster/node.ts). Without one, every instance runs here.
 */
export interface Placement {
  isLocal(uid: string, index: number): boolean
  /** This process's end of a channel whose other end runs in another process. */
  remote(address: ChannelAddress, capacity: number): Channel
}

/**
 * The channel this process holds for `address`: in-process if both ends run here, a remote end if
 * one does, none if neither does.
 */
export function channelFor(placement: Placement | undefined, address: ChannelAddress, capacity: number): Channel | undefined {
  if (placement === undefined) return new LocalChannel(capacity)
  const sends = placement.isLocal(address.from, address.fromIndex)
  const receives = placement.isLocal(address.to, address.toIndex)
  if (sends && receives) return new LocalChannel(capacity)
  if (!sends && !receives) return undefined
  return placement.remote(address, capacity)
}
