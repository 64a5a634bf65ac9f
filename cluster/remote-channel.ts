/**
 * Channels between instances on different nodes, over NATS (docs/architecture.md section 21).
 *
 * One channel per (sender instance, receiver instance) of an edge, as in process. Each channel
 * item (a record batch, a barrier, a watermark, end-of-input) is one NATS message on the data
 * subject of the channel, with the attempt and a sequence number per channel. The receiver
 * grants credit on the credit subject: the total number of items the sender may have sent. A
 * sender without credit stops like one whose in-process receiver is full, so a slow operator
 * slows its senders and no queue grows without bound (nats-server would cut a slow consumer,
 * and nats.js buffers outgoing messages without limit).
 *
 * A sender never publishes beyond its credit: items an instance pushes past it (one step may
 * push several after one credit check) wait in the sender until credit comes. So a receiver can
 * check every item against the credit it granted: one beyond is a {@link CreditExceededError}.
 * A receiver that sees that, a gap in sequence numbers, another attempt's message, or bytes that
 * do not decode ({@link ChannelBrokenError}) drops the message, counts it and reports the attempt
 * as failed: the job recovers from its last checkpoint instead of running on with a hole in a
 * stream or a queue that grows without bound.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { Channel, ChannelAddress, ChannelItem } from '../actors/runtime/channel.ts'
import { channelSubjects, decodeCredit, encodeCredit, encodeProbe, ItemDecoder, ItemEncoder, type Generation } from './channel-wire.ts'
import { ChannelBrokenError, CreditExceededError } from './errors.ts'

/** What both ends report to their node. */
export interface ChannelEvents {
  /** A message arrived or credit was granted: the executor has work. */
  wake(): void
  /** The channel is broken (a gap, a foreign attempt, undecodable bytes, items beyond the credit): the attempt must recover. */
  broken(error: ChannelBrokenError | CreditExceededError): void
  /** A message was dropped; counted for `weir status`. */
  dropped(): void
}

/** Time between a sender's probes, in ms. */
const PROBE_MS = 500

/**
 * The sending end: publishes each item at once while the receiver has granted credit, and holds
 * back the items pushed beyond it (an instance checks credit before a step, and a step may push
 * several items) until more is granted.
 */
export class RemoteSender implements Channel {
  /** Items published. */
  private sent = 0
  /** Items encoded: published, or held in `held`. */
  private encoded = 0
  private granted = 0
  /** Encoded items beyond the credit, in order. */
  private held: Uint8Array[] = []
  private readonly sub: Subscription
  private readonly data: string
  private readonly probe: NodeJS.Timeout
  private readonly encoder = new ItemEncoder()
  readonly length = 0

  constructor(
    private readonly nc: NatsConnection,
    root: string,
    private readonly gen: Generation,
    address: ChannelAddress,
    events: ChannelEvents,
    /** Largest message the server takes; a bigger record batch is split. */
    private readonly maxPayload: number,
  ) {
    const subjects = channelSubjects(root, gen, address)
    this.data = subjects.data
    this.sub = nc.subscribe(subjects.credit, {
      callback: (err, msg) => {
        if (err !== null) return
        const granted = decodeCredit(msg, gen)
        if (granted === undefined) {
          events.dropped()
          return
        }
        if (granted > this.granted) {
          const wasBlocked = !this.hasCredit()
          this.granted = granted
          this.publishHeld()
          if (wasBlocked && this.hasCredit()) events.wake()
        }
      },
    })
    // Messages lost on the way (a NATS server restart, a slow consumer cut off) would otherwise
    // leave the receiver waiting and this sender without credit for ever: the probe tells the
    // receiver how many items it should have.
    this.probe = setInterval(() => {
      if (this.sent > 0 && !nc.isClosed()) nc.publish(this.data, encodeProbe(gen, this.sent))
    }, PROBE_MS)
    this.probe.unref()
  }

  hasCredit(): boolean {
    return this.held.length === 0 && this.sent < this.granted
  }

  push(item: ChannelItem): void {
    const bytes = this.encoder.encode(this.gen, this.encoded + 1, item)
    if (bytes.byteLength > this.maxPayload && item.type === 'records' && item.records.length > 1) {
      // Too big for one NATS message: send it as two batches, in order. The encoder may have
      // described new shapes in the bytes dropped here, so the halves start a new stream.
      this.encoder.restart()
      const half = item.records.length >> 1
      const part = (a: number, b: number): ChannelItem => ({
        type: 'records',
        records: item.records.slice(a, b),
        keys: item.keys?.slice(a, b),
        groups: item.groups?.slice(a, b),
        ...(item.timestamps === undefined ? {} : { timestamps: item.timestamps.slice(a, b) }),
      })
      this.push(part(0, half))
      this.push(part(half, item.records.length))
      return
    }
    if (bytes.byteLength > this.maxPayload) throw new Error(`one record encodes to ${bytes.byteLength} bytes, more than the NATS server's max_payload of ${this.maxPayload}; raise max_payload in the server's configuration`)
    this.encoded++
    if (this.held.length === 0 && this.sent < this.granted) this.publish(bytes)
    else this.held.push(bytes)
  }

  private publish(bytes: Uint8Array): void {
    this.sent++
    this.nc.publish(this.data, bytes)
  }

  /** Publishes held items, in order, as far as the credit goes. */
  private publishHeld(): void {
    let i = 0
    while (i < this.held.length && this.sent < this.granted) this.publish(this.held[i++]!)
    if (i > 0) this.held = this.held.slice(i)
  }

  shift(): ChannelItem | undefined {
    return undefined
  }

  close(): void {
    clearInterval(this.probe)
    this.sub.unsubscribe()
  }
}

/**
 * The receiving end: queues items in order and grants credit as the instance takes them. It
 * grants `window` items at first and again whenever half the window was consumed, and repeats
 * its grant now and then, so a sender that subscribed after the first grant still gets it.
 */
export class RemoteReceiver implements Channel {
  private items: ChannelItem[] = []
  private head = 0
  private received = 0
  private consumed = 0
  private grantedAt = 0
  private broken = false
  private readonly sub: Subscription
  private readonly credit: string
  private readonly repeat: NodeJS.Timeout

  constructor(
    private readonly nc: NatsConnection,
    root: string,
    private readonly gen: Generation,
    address: ChannelAddress,
    private readonly events: ChannelEvents,
    private readonly window: number,
  ) {
    const subjects = channelSubjects(root, gen, address)
    this.credit = subjects.credit
    const name = `${address.from}[${address.fromIndex}] -> ${address.to}[${address.toIndex}]`
    const decoder = new ItemDecoder()
    this.sub = nc.subscribe(subjects.data, {
      callback: (err, msg) => {
        if (err !== null || this.broken) return
        let decoded: ReturnType<ItemDecoder['decode']>
        try {
          decoded = decoder.decode(msg.data)
        } catch (e) {
          return this.refuse(new ChannelBrokenError(name, (e as Error).message))
        }
        if (decoded.gen.epoch !== gen.epoch || decoded.gen.attempt !== gen.attempt) {
          return this.refuse(new ChannelBrokenError(name, `a message of epoch ${decoded.gen.epoch} attempt ${decoded.gen.attempt} on the channel of epoch ${gen.epoch} attempt ${gen.attempt}`))
        }
        if (decoded.item === undefined) {
          // A probe: the sender has sent `seq` items; fewer arrived means some were lost.
          if (decoded.seq > this.received) this.refuse(new ChannelBrokenError(name, `the sender sent ${decoded.seq} messages, ${this.received} arrived (messages lost)`))
          return
        }
        if (decoded.seq !== this.received + 1) return this.refuse(new ChannelBrokenError(name, `message ${decoded.seq} after ${this.received} (a gap or a replay)`))
        // Cumulative credit against cumulative items: a sender that saw a grant saw at most this one.
        if (decoded.seq > this.grantedAt) return this.refuse(new CreditExceededError(name, this.grantedAt, decoded.seq))
        this.received = decoded.seq
        this.items.push(decoded.item)
        events.wake()
      },
    })
    this.grant()
    this.repeat = setInterval(() => this.publishGrant(), 250)
    this.repeat.unref()
  }

  private refuse(error: ChannelBrokenError | CreditExceededError): void {
    this.events.dropped()
    this.broken = true
    this.events.broken(error)
  }

  get length(): number {
    return this.items.length - this.head
  }

  hasCredit(): boolean {
    return true
  }

  push(): void {
    throw new Error('the receiving end of a remote channel cannot send')
  }

  shift(): ChannelItem | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]!
    this.items[this.head++] = undefined as unknown as ChannelItem
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    if (++this.consumed + this.window - this.grantedAt >= this.window >> 1) this.grant()
    return item
  }

  private grant(): void {
    this.grantedAt = this.consumed + this.window
    this.publishGrant()
  }

  private publishGrant(): void {
    if (this.broken || this.nc.isClosed()) return
    this.nc.publish(this.credit, encodeCredit(this.gen, this.grantedAt))
  }

  close(): void {
    clearInterval(this.repeat)
    this.sub.unsubscribe()
  }
}
