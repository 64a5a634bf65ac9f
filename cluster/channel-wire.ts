/**
 * What remote channels put on the wire: the subjects of a channel, items framed with their attempt
 * and sequence number, credit grants and probes, and the decoders that refuse anything else.
 */
import type { Msg } from '@nats-io/transport-node'
import { Encoder } from 'cbor-x'
import type { ChannelAddress, ChannelItem } from '../actors/runtime/channel.ts'
import type { Key } from '../actors/state/key-groups.ts'

/** Which attempt of which coordinator a message belongs to. */
export interface Generation {
  epoch: number
  attempt: number
}

// Credit grants and probes: plain CBOR, each message decodes on its own.
const wire = new Encoder({ useRecords: false })

/** Item tags on the wire: arrays are smaller and faster to check than objects. */
const RECORDS = 0
const BARRIER = 1
const END = 2
const WATERMARK = 3
/** Not an item: the sender's count of items sent so far, so a receiver notices lost messages. */
const PROBE = 4

/**
 * The first byte of a data message. Items are encoded as one CBOR stream per channel: an object
 * shape is described once, the first time it is sent, and later records refer to it (smaller
 * and faster to encode and decode than a map per record). So the receiver must decode every item
 * in order with one decoder: a lost item shows up as a sequence gap and breaks the channel.
 */
const FRAME_ITEM = 0
/** An item that starts a new stream: the sender dropped an encoding it did not send (a batch it split). */
const FRAME_RESTART = 1
/** A probe, plain CBOR outside the stream. */
const FRAME_PROBE = 2

const streamEncoder = () => new Encoder({ sequential: true })
const streamDecoder = () => new Encoder({ sequential: true, structures: [] })

function framed(frame: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength + 1)
  out[0] = frame
  out.set(bytes, 1)
  return out
}

function envelope(gen: Generation, seq: number, item: ChannelItem): unknown[] {
  switch (item.type) {
    case 'records':
      return [gen.epoch, gen.attempt, seq, RECORDS, item.records, item.keys ?? null, item.groups ?? null, item.timestamps ?? null]
    case 'barrier':
      return [gen.epoch, gen.attempt, seq, BARRIER, item.id]
    case 'end':
      return [gen.epoch, gen.attempt, seq, END]
    case 'watermark':
      return [gen.epoch, gen.attempt, seq, WATERMARK, item.time, item.idle === true]
  }
}

/** Encodes the items of one channel, in order: `[frame][CBOR [epoch, attempt, seq, tag, ...fields]]`. */
export class ItemEncoder {
  private stream = streamEncoder()
  private restarted = false

  /** Encodes the item; call {@link restart} if the result is not sent. */
  encode(gen: Generation, seq: number, item: ChannelItem): Uint8Array {
    const bytes = framed(this.restarted ? FRAME_RESTART : FRAME_ITEM, this.stream.encode(envelope(gen, seq, item)))
    this.restarted = false
    return bytes
  }

  /** Forgets the shapes described so far: the next item starts a new stream. */
  restart(): void {
    this.stream = streamEncoder()
    this.restarted = true
  }
}

/** Encodes a probe: `[epoch, attempt, items sent so far, PROBE]`. */
export function encodeProbe(gen: Generation, sent: number): Uint8Array {
  return framed(FRAME_PROBE, wire.encode([gen.epoch, gen.attempt, sent, PROBE]))
}

/** Why a channel message was refused. */
export class BadChannelMessage extends Error {
  override readonly name = 'BadChannelMessage'
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)
const isNumberArray = (v: unknown, n: number): v is number[] => Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number')

/** Decodes and checks the data messages of one channel, in order, as {@link ItemEncoder} made them. */
export class ItemDecoder {
  private stream = streamDecoder()

  /**
   * Decodes one message; throws {@link BadChannelMessage} for anything malformed. A probe comes
   * back with `item` undefined and `seq` the count of items sent.
   */
  decode(bytes: Uint8Array): { gen: Generation; seq: number; item: ChannelItem | undefined } {
    const frame = bytes[0]
    if (frame !== FRAME_ITEM && frame !== FRAME_RESTART && frame !== FRAME_PROBE) throw new BadChannelMessage(`${bytes.byteLength} bytes that do not start with a frame byte`)
    if (frame === FRAME_RESTART) this.stream = streamDecoder()
    let v: unknown
    try {
      v = (frame === FRAME_PROBE ? wire : this.stream).decode(bytes.subarray(1))
    } catch (err) {
      throw new BadChannelMessage(`${bytes.byteLength} bytes that do not decode as CBOR (${(err as Error).message})`)
    }
    const decoded = checkItem(v)
    if ((frame === FRAME_PROBE) !== (decoded.item === undefined)) throw new BadChannelMessage(frame === FRAME_PROBE ? 'a probe frame that holds an item' : 'a probe inside the item stream')
    return decoded
  }
}

function checkItem(v: unknown): { gen: Generation; seq: number; item: ChannelItem | undefined } {
  if (!Array.isArray(v) || v.length < 4 || !isInt(v[0]) || !isInt(v[1]) || !isInt(v[2]) || !isInt(v[3])) throw new BadChannelMessage('not a channel message (no epoch, attempt, sequence and tag)')
  const gen = { epoch: v[0], attempt: v[1] }
  const seq = v[2]
  switch (v[3]) {
    case RECORDS: {
      const [, , , , records, keys, groups, timestamps] = v as unknown[]
      if (!Array.isArray(records) || v.length !== 8) throw new BadChannelMessage('a record batch without records')
      const n = records.length
      if (keys !== null && !(Array.isArray(keys) && keys.length === n)) throw new BadChannelMessage('a record batch whose keys do not match its records')
      if (groups !== null && !isNumberArray(groups, n)) throw new BadChannelMessage('a record batch whose key groups do not match its records')
      if (timestamps !== null && !isNumberArray(timestamps, n)) throw new BadChannelMessage('a record batch whose timestamps do not match its records')
      const item: ChannelItem = { type: 'records', records, keys: (keys ?? undefined) as Key[] | undefined, groups: (groups ?? undefined) as number[] | undefined }
      if (timestamps !== null) item.timestamps = timestamps as number[]
      return { gen, seq, item }
    }
    case BARRIER:
      if (v.length !== 5 || !isInt(v[4]) || v[4] < 1) throw new BadChannelMessage('a barrier without a checkpoint id')
      return { gen, seq, item: { type: 'barrier', id: v[4] } }
    case END:
      if (v.length !== 4) throw new BadChannelMessage('a malformed end-of-input')
      return { gen, seq, item: { type: 'end' } }
    case PROBE:
      if (v.length !== 4) throw new BadChannelMessage('a malformed probe')
      return { gen, seq, item: undefined }
    case WATERMARK:
      if (v.length !== 6 || typeof v[4] !== 'number' || typeof v[5] !== 'boolean') throw new BadChannelMessage('a malformed watermark')
      return { gen, seq, item: v[5] ? { type: 'watermark', time: v[4], idle: true } : { type: 'watermark', time: v[4] } }
    default:
      throw new BadChannelMessage(`an unknown item tag ${String(v[3])}`)
  }
}

/** Subjects of one job's channels: everything under `<prefix>.<job>` so NATS permissions can confine a node. */
export function channelSubjects(root: string, gen: Generation, a: ChannelAddress): { data: string; credit: string } {
  const tail = `${gen.epoch}.${gen.attempt}.${a.kind === 'records' ? 'r' : 'm'}.${a.edge}.${a.fromIndex}.${a.toIndex}`
  return { data: `${root}.d.${tail}`, credit: `${root}.k.${tail}` }
}

/** Encodes a credit grant: `[epoch, attempt, total items the sender may have sent]`. */
export function encodeCredit(gen: Generation, granted: number): Uint8Array {
  return wire.encode([gen.epoch, gen.attempt, granted])
}

export function decodeCredit(msg: Msg, gen: Generation): number | undefined {
  try {
    const v = wire.decode(msg.data) as unknown
    if (Array.isArray(v) && v.length === 3 && v[0] === gen.epoch && v[1] === gen.attempt && isInt(v[2]) && v[2] >= 0) return v[2]
  } catch {
    // counted by the caller
  }
  return undefined
}
