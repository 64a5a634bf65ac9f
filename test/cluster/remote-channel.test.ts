/**
 * The NATS channel between two instances on their own: the per-channel CBOR stream (shapes
 * described once, then referred to), batches split for a small max_payload, and a receiver that
 * notices lost, foreign and malformed messages. Against a nats-server of the test's own.
 */
import t, { type Test } from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import type { ChannelAddress, ChannelItem } from '../../actors/runtime/channel.ts'
import { ChannelBrokenError, CreditExceededError } from '../../cluster/errors.ts'
import { channelSubjects, ItemDecoder, ItemEncoder } from '../../cluster/channel-wire.ts'
import { RemoteReceiver, RemoteSender, type ChannelEvents } from '../../cluster/remote-channel.ts'
import { hasNatsServer, NO_NATS_SERVER, startNatsServer } from '../support/nats-server.ts'

const gen = { epoch: 3, attempt: 2 }
const address: ChannelAddress = { kind: 'records', edge: 0, from: 'src', fromIndex: 0, to: 'count', toIndex: 1 }

/** A batch of records of many shapes: nested objects, Maps, arrays, strings, numbers, null. */
function batch(m: number, n = 50): ChannelItem {
  const records = Array.from({ length: n }, (_, i) => {
    const shape = (m * 7 + i) % 300
    return { [`f${shape}`]: i, key: `k${m}-${i}`, nested: { x: shape, [`y${shape % 5}`]: [1, 'two', null, { z: m }] }, when: m * 1000 + i, tags: new Map([['a', shape]]) }
  })
  return { type: 'records', records, keys: records.map((r) => r.key), groups: records.map((_, i) => i % 128) }
}

t.test('items of one channel decode exactly, in order, across hundreds of record shapes', async (tt) => {
  const enc = new ItemEncoder()
  const dec = new ItemDecoder()
  const sent: ChannelItem[] = []
  for (let m = 0; m < 2000; m++) sent.push(m % 97 === 5 ? { type: 'barrier', id: m } : m % 89 === 3 ? (m % 2 === 0 ? { type: 'watermark', time: m, idle: true } : { type: 'watermark', time: m }) : { ...batch(m, 20), ...(m % 3 === 0 ? { timestamps: Array.from({ length: 20 }, (_, i) => m + i) } : {}) })
  sent.push({ type: 'end' })
  const got = sent.map((item, i) => dec.decode(enc.encode(gen, i + 1, item)))
  tt.same(
    got.map((g) => g.seq),
    sent.map((_, i) => i + 1),
  )
  tt.ok(
    got.every((g) => g.gen.epoch === 3 && g.gen.attempt === 2),
    'every message carries the attempt',
  )
  tt.strictSame(
    got.map((g) => g.item),
    sent.map((item) => (item.type === 'records' ? { ...item, keys: item.keys, groups: item.groups } : item)),
    'every item decodes to what was sent',
  )
})

t.test('an encoding that is not sent: the next item restarts the stream and still decodes exactly', async (tt) => {
  const enc = new ItemEncoder()
  const dec = new ItemDecoder()
  dec.decode(enc.encode(gen, 1, batch(0)))
  enc.encode(gen, 2, batch(1)) // dropped, as a batch too big for max_payload is
  enc.restart()
  const second = enc.encode(gen, 2, batch(2))
  tt.equal(second[0], 1, 'the item is marked as a new stream')
  tt.strictSame(dec.decode(second).item, batch(2))
  tt.strictSame(dec.decode(enc.encode(gen, 3, batch(3))).item, batch(3), 'and the stream goes on')
  // Without the restart a dropped encoding leaves the decoder behind: this is what the restart prevents.
  const careless = new ItemEncoder()
  const behind = new ItemDecoder()
  behind.decode(careless.encode(gen, 1, batch(0)))
  careless.encode(gen, 2, batch(1))
  let wrong: unknown
  try {
    wrong = behind.decode(careless.encode(gen, 2, batch(2))).item
  } catch (err) {
    wrong = err
  }
  tt.not(JSON.stringify(wrong), JSON.stringify(batch(2)), 'a skipped encoding without a restart does not decode as sent')
})

t.test('malformed messages are refused with a reason', async (tt) => {
  const dec = new ItemDecoder()
  tt.throws(() => dec.decode(Uint8Array.of(9, 1, 2)), /do not start with a frame byte/)
  tt.throws(() => dec.decode(Uint8Array.of(0, 0xff, 0xff)), /do not decode as CBOR|not a channel message/)
  tt.throws(() => dec.decode(new Uint8Array(0)), /frame byte/)
  const enc = new ItemEncoder()
  const bytes = enc.encode(gen, 1, batch(0))
  tt.throws(() => new ItemDecoder().decode(bytes.subarray(0, bytes.byteLength >> 1)), /do not decode|not a channel message|record batch/)
})

t.test('over NATS', async (tt) => {
  if (!hasNatsServer()) return tt.fail(NO_NATS_SERVER)
  const server = await startNatsServer({ maxPayload: 4096 })
  tt.teardown(() => server.cleanup())
  const conns: NatsConnection[] = []
  tt.teardown(async () => {
    for (const c of conns) await c.close()
  })
  const nc = async () => {
    const c = await connect({ servers: server.url })
    conns.push(c)
    return c
  }
  const root = 'weir.channel-test'
  const events = () => {
    const e = { woke: 0, dropped: 0, broken: [] as string[], errors: [] as Error[] }
    const ev: ChannelEvents = {
      wake: () => e.woke++,
      dropped: () => e.dropped++,
      broken: (err) => {
        e.broken.push(err.message)
        e.errors.push(err)
      },
    }
    return { e, ev }
  }
  const until = async (check: () => boolean, ms = 5000) => {
    const end = Date.now() + ms
    while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
    return check()
  }

  tt.test('batches bigger than max_payload are split, in order, and decode exactly', async (t2) => {
    const [a, b] = [await nc(), await nc()]
    const rx = events()
    const receiver = new RemoteReceiver(b, root, gen, address, rx.ev, 1000)
    await b.flush()
    const sender = new RemoteSender(a, root, gen, address, events().ev, 4096)
    t2.teardown(() => {
      sender.close()
      receiver.close()
    })
    const sent: unknown[] = []
    for (let m = 0; m < 40; m++) {
      const item = batch(m, 100) // 5 to 7 KB each: every batch is split
      sent.push(...(item as { records: unknown[] }).records)
      sender.push(item)
    }
    sender.push({ type: 'end' })
    const got: unknown[] = []
    let ended = false
    t2.ok(
      await until(() => {
        for (let item = receiver.shift(); item !== undefined; item = receiver.shift()) {
          if (item.type === 'records') got.push(...item.records)
          if (item.type === 'end') ended = true
        }
        return ended
      }),
      'the end arrives',
    )
    t2.same(rx.e.broken, [], 'nothing refused')
    t2.ok(receiver.length === 0 && got.length === 4000)
    t2.strictSame(got, sent, 'every record, in order, as sent')
  })

  tt.test('a record bigger than max_payload fails clearly', async (t2) => {
    const a = await nc()
    const sender = new RemoteSender(a, root, { epoch: 9, attempt: 1 }, address, events().ev, 4096)
    t2.teardown(() => sender.close())
    t2.throws(() => sender.push({ type: 'records', records: ['x'.repeat(5000)], keys: undefined, groups: undefined }), /one record encodes to \d+ bytes, more than the NATS server's max_payload of 4096/)
  })

  tt.test('messages lost before the receiver listened: the probe reveals them', async (t2) => {
    const [a, b] = [await nc(), await nc()]
    const g = { epoch: 4, attempt: 1 }
    const sender = new RemoteSender(a, root, g, address, events().ev, 4096)
    // A sender sends only with credit: a receiver that grants and goes away gives it some.
    const gone = new RemoteReceiver(b, root, g, address, events().ev, 1000)
    t2.ok(await until(() => sender.hasCredit()), 'credit from a receiver that then goes away')
    gone.close()
    await b.flush()
    sender.push(batch(0, 5))
    sender.push(batch(1, 5))
    await a.flush()
    const rx = events()
    const receiver = new RemoteReceiver(b, root, g, address, rx.ev, 1000)
    t2.teardown(() => {
      sender.close()
      receiver.close()
    })
    t2.ok(await until(() => rx.e.broken.length > 0, 3000), 'the receiver refuses the channel within a probe interval')
    t2.match(rx.e.broken[0], /the sender sent 2 messages, 0 arrived \(messages lost\)/)
  })

  tt.test('a gap, a foreign attempt and garbage each break the channel', async (t2) => {
    const g = { epoch: 5, attempt: 1 }
    const cases: [string, (data: string, a: NatsConnection) => void, RegExp][] = [
      ['gap', (data, a) => a.publish(data, new ItemEncoder().encode(g, 2, batch(0, 3))), /message 2 after 0 \(a gap or a replay\)/],
      ['foreign', (data, a) => a.publish(data, new ItemEncoder().encode({ epoch: 4, attempt: 7 }, 1, batch(0, 3))), /a message of epoch 4 attempt 7/],
      ['garbage', (data, a) => a.publish(data, Uint8Array.of(0, 0x9f, 0xff, 0x13)), /do not decode|not a channel message/],
    ]
    for (const [name, send, reason] of cases) {
      const [a, b] = [await nc(), await nc()]
      const addr = { ...address, edge: cases.findIndex((c) => c[0] === name) + 10 }
      const rx = events()
      const receiver = new RemoteReceiver(b, root, g, addr, rx.ev, 1000)
      await b.flush()
      send(channelSubjects(root, g, addr).data, a)
      t2.ok(await until(() => rx.e.broken.length > 0), `${name}: refused`)
      t2.match(rx.e.broken[0], reason, name)
      t2.type(rx.e.errors[0], ChannelBrokenError, `${name}: a ChannelBrokenError`)
      t2.equal(receiver.shift(), undefined, `${name}: nothing delivered`)
      receiver.close()
    }
  })
  /** A sender made by hand: publishes items 1..n on the channel's data subject, credit or not. */
  const handMade = (a: NatsConnection, g: typeof gen, addr: ChannelAddress) => {
    const encoder = new ItemEncoder()
    let seq = 0
    return (n: number) => {
      for (let i = 0; i < n; i++) a.publish(channelSubjects(root, g, addr).data, encoder.encode(g, ++seq, batch(seq, 2)))
      return a.flush()
    }
  }

  /** A receiver granting 4 items on its own channel, and a hand-made sender for it. */
  const creditCase = async (t2: Test, epoch: number, edge: number) => {
    const g = { epoch, attempt: 1 }
    const addr = { ...address, edge }
    const [a, b] = [await nc(), await nc()]
    const rx = events()
    const receiver = new RemoteReceiver(b, root, g, addr, rx.ev, 4)
    t2.teardown(() => receiver.close())
    await b.flush()
    return { rx, receiver, send: handMade(a, g, addr) }
  }

  tt.test('credit - a sender one item beyond the credit granted is refused at that item with CreditExceededError', async (t2) => {
    const { rx, receiver, send } = await creditCase(t2, 6, 20)
    await send(5)
    t2.ok(await until(() => rx.e.broken.length > 0), 'refused')
    t2.type(rx.e.errors[0], CreditExceededError)
    t2.match(rx.e.errors[0], { name: 'CreditExceededError', channel: 'src[0] -> count[1]', granted: 4, received: 5, retryable: true }, 'at the first excess item, naming the channel')
    t2.equal(rx.e.errors[0]!.message, 'channel src[0] -> count[1]: the sender sent item 5 but was granted credit for 4; a sender must hold items back until it is granted credit for them')
    t2.equal(receiver.length, 4, 'the items within the credit are delivered, the excess one is not')
    t2.equal(rx.e.dropped, 1, 'the excess item is counted as dropped')
  })

  tt.test('credit - a sender at the edge of its credit is not flagged, and one past a later grant is', async (t2) => {
    const { rx, receiver, send } = await creditCase(t2, 7, 21)
    await send(4)
    t2.ok(await until(() => receiver.length === 4), 'all four granted items arrive')
    receiver.shift()
    receiver.shift() // half the window consumed: the receiver grants up to item 6
    await send(2)
    t2.ok(await until(() => receiver.length === 4), 'items 5 and 6 arrive under the new grant')
    await new Promise((r) => setTimeout(r, 100))
    t2.same(rx.e.broken, [], 'not flagged at the edge')
    await send(1)
    t2.ok(await until(() => rx.e.broken.length > 0), 'item 7 is refused')
    t2.match(rx.e.errors[0], { name: 'CreditExceededError', granted: 6, received: 7 })
  })

  tt.test('credit - a sender pushed far past its credit holds the items back and sends them as credit comes, never flagged', async (t2) => {
    const g = { epoch: 8, attempt: 1 }
    const addr = { ...address, edge: 22 }
    const [a, b] = [await nc(), await nc()]
    const rx = events()
    const receiver = new RemoteReceiver(b, root, g, addr, rx.ev, 4)
    await b.flush()
    const tx = events()
    const sender = new RemoteSender(a, root, g, addr, tx.ev, 4096)
    t2.teardown(() => {
      sender.close()
      receiver.close()
    })
    t2.ok(await until(() => sender.hasCredit()), 'the first grant arrives')
    // One step of an instance may push many items after one credit check.
    for (let m = 0; m < 50; m++) sender.push(batch(m, 3))
    sender.push({ type: 'end' })
    t2.notOk(sender.hasCredit(), 'no credit while items are held')
    const got: number[] = []
    let ended = false
    t2.ok(
      await until(() => {
        t2.ok(receiver.length <= 4, 'never more in the receiver than it granted')
        const item = receiver.shift() // one at a time: a slow consumer
        if (item?.type === 'records') got.push((item.records[0] as { when: number }).when / 1000)
        if (item?.type === 'end') ended = true
        return ended
      }, 10_000),
      'the end arrives',
    )
    t2.same(got, Array.from({ length: 50 }, (_, m) => m), 'every batch, in order')
    t2.same(rx.e.broken, [], 'nothing refused')
    t2.ok(await until(() => sender.hasCredit()), 'credit again once the held items are sent')
  })
})
