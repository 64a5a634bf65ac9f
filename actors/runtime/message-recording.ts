/**
 * Recorded message channels (docs/architecture.md section 15): the receiving side's bookkeeping of
 * the classic Chandy-Lamport channel state, and the format of the `channel` chunks it writes.
 *
 * A channel that closes a cycle is never held for alignment. After the instance took its snapshot
 * `n`, every batch that arrives on such a channel before the channel's barrier `n` is processed
 * and also recorded; the recording is written with the snapshot and replayed first on restore.
 * A barrier `n` that arrives before the instance's snapshot `n` sets the channel aside (its later
 * items wait in the channel, which always accepts, so the sender never waits) until the snapshot.
 */
import { cborSerde } from '../../persistence/serde.ts'
import type { RecordBatch } from './channel.ts'
import { UnserializableMessageError } from '../errors.ts'
import { unserializableIn } from '../state/checks.ts'
import type { Key, KeyGroupRange } from '../state/key-groups.ts'

/** Format of a `channel` chunk: CBOR of an array of recorded batches, each CBOR of `[keys, groups, messages]`. */
export const CHANNEL_CHUNK_FORMAT = 1

const codec = cborSerde<unknown>()

/** The messages one instance recorded for one checkpoint. */
export class Recording {
  /** Encoded batches, in arrival order per channel. */
  readonly batches: Uint8Array[] = []
  /** Channels still recording: their barrier for this checkpoint has not arrived. */
  private open: boolean[]
  private openCount = 0

  constructor(
    readonly checkpointId: number,
    open: boolean[],
  ) {
    this.open = open
    for (const o of open) if (o) this.openCount++
  }

  /** Every recorded channel delivered its barrier (or ended): the recording can be written. */
  get complete(): boolean {
    return this.openCount === 0
  }

  isOpen(channel: number): boolean {
    return this.open[channel] === true
  }

  close(channel: number): void {
    if (this.open[channel] !== true) return
    this.open[channel] = false
    this.openCount--
  }

  /** The chunk data: empty when nothing was in flight. */
  encode(): Uint8Array {
    return this.batches.length === 0 ? new Uint8Array(0) : codec.encode(this.batches)
  }
}

/** The recorded input channels of one instance (indexes 0..channels-1 among them). */
export class MessageRecorder {
  /** The newest barrier that arrived on each channel. */
  private readonly lastBarrier: number[]
  private readonly ended: boolean[]
  private endedCount = 0
  private lastSnapshot = 0
  /** Recordings not yet complete, oldest first. */
  private readonly open: Recording[] = []

  constructor(
    readonly channels: number,
    /** The receiving operator, for errors. */
    private readonly operator = '',
  ) {
    this.lastBarrier = new Array<number>(channels).fill(0)
    this.ended = new Array<boolean>(channels).fill(false)
  }

  /** True if the channel's next items come after a barrier of a snapshot this instance has not taken yet. */
  isHeld(channel: number): boolean {
    return this.lastBarrier[channel]! > this.lastSnapshot
  }

  /** A batch arrived (and is about to be processed): record it for every snapshot it is in flight for. */
  onRecords(channel: number, batch: RecordBatch): void {
    if (this.open.length === 0) return
    let encoded: Uint8Array | undefined
    for (const r of this.open) {
      if (!r.isOpen(channel)) continue
      encoded ??= this.encode(batch)
      r.batches.push(encoded)
    }
  }

  private encode(batch: RecordBatch): Uint8Array {
    // CBOR would write a class instance as a plain object and drop functions: refuse what would
    // not come back as it was, rather than restore something else.
    for (let i = 0; i < batch.records.length; i++) {
      const problem = unserializableIn(batch.records[i])
      if (problem !== undefined) throw new UnserializableMessageError(this.operator, batch.keys?.[i], problem)
    }
    return codec.encode([batch.keys, batch.groups, batch.records])
  }

  /** Restored messages not processed yet at snapshot time are still in flight: they belong in its recording. */
  recordPending(recording: Recording, batches: readonly RecordBatch[]): void {
    for (const b of batches) recording.batches.push(this.encode(b))
  }

  /** Barrier `id` arrived on `channel`: recordings up to `id` stop recording it. */
  onBarrier(channel: number, id: number): void {
    if (id > this.lastBarrier[channel]!) this.lastBarrier[channel] = id
    for (const r of this.open) if (r.checkpointId <= id) r.close(channel)
    this.prune()
  }

  /** The channel ended: nothing more is in flight on it. */
  onEnd(channel: number): void {
    if (this.ended[channel]) return
    this.ended[channel] = true
    this.endedCount++
    for (const r of this.open) r.close(channel)
    this.prune()
  }

  /** Every channel ended. */
  get allEnded(): boolean {
    return this.endedCount === this.channels
  }

  /**
   * The instance takes snapshot `id`: channels whose barrier `id` already arrived are released,
   * the others record from now until their barrier. Returns the recording to write with the snapshot.
   */
  onSnapshot(id: number): Recording {
    this.lastSnapshot = id
    const open = this.lastBarrier.map((b, c) => !this.ended[c] && b < id)
    const r = new Recording(id, open)
    if (!r.complete) this.open.push(r)
    return r
  }

  private prune(): void {
    while (this.open.length > 0 && this.open[0]!.complete) this.open.shift()
    for (let i = this.open.length - 1; i >= 0; i--) if (this.open[i]!.complete) this.open.splice(i, 1)
  }
}

/** Decodes `channel` chunks and keeps the messages of the key groups in `range`, in order, as batches. */
export function decodeChannelChunk(data: Uint8Array, range: KeyGroupRange): RecordBatch[] {
  if (data.byteLength === 0) return []
  const out: RecordBatch[] = []
  for (const bytes of codec.decode(data) as Uint8Array[]) {
    const [keys, groups, records] = codec.decode(bytes) as [Key[], number[], unknown[]]
    const batch: RecordBatch = { type: 'records', records: [], keys: [], groups: [] }
    for (let i = 0; i < records.length; i++) {
      const g = groups[i]!
      if (g < range.start || g > range.end) continue
      batch.records.push(records[i])
      batch.keys!.push(keys[i]!)
      batch.groups!.push(g)
    }
    if (batch.records.length > 0) out.push(batch)
  }
  return out
}
