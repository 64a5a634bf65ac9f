import { Encoder } from 'cbor-x'

/**
 * Turns values into bytes and back. Law: `decode(encode(v))` is deep-equal to `v` for every
 * value the serde accepts; a serde that cannot keep that law must throw from `encode`.
 *
 * @example
 * const json: Serde<object> = {
 *   encode: (v) => Buffer.from(JSON.stringify(v)),
 *   decode: (b) => JSON.parse(Buffer.from(b).toString('utf8')),
 * }
 */
export interface Serde<T> {
  encode(value: T): Uint8Array
  decode(bytes: Uint8Array): T
}

// Plain CBOR (no shared record structures): a snapshot must decode on its own, years later,
// without the encoder instance that wrote it. With these options plain objects come back as
// objects and Maps as Maps (cbor-x tags Maps); `mapsAsObjects: false` would lose that distinction.
const snapshotEncoder = new Encoder({ useRecords: false })

/** The default serde: CBOR via cbor-x. Handles objects, arrays, Maps, Sets, Dates, bigints, bytes. */
export function cborSerde<T>(): Serde<T> {
  return {
    encode: (value) => snapshotEncoder.encode(value),
    decode: (bytes) => snapshotEncoder.decode(bytes) as T,
  }
}
