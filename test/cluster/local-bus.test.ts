/**
 * The in-process bus of `weir run --workers` and the store shared through it, on their own:
 * subject matching as NATS does it, delivery and unsubscribe, request/reply, flush, and store
 * errors that keep their class across threads.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BusConnection, LocalBus, subjectMatches } from '../../cluster/local-bus.ts'
import { StoreClient, StoreServer } from '../../cluster/store-proxy.ts'
import { EmbeddedStore } from '../../persistence/embedded-store.ts'
import { JobAlreadyRunningError } from '../../persistence/errors.ts'

t.test('subjects match as in NATS', async (tt) => {
  tt.ok(subjectMatches('weir.a.hb', 'weir.a.hb'))
  tt.ok(subjectMatches('weir.*.hb', 'weir.a.hb'))
  tt.notOk(subjectMatches('weir.*.hb', 'weir.a.b.hb'))
  tt.ok(subjectMatches('weir.>', 'weir.a.b.hb'))
  tt.notOk(subjectMatches('weir.>', 'weir'))
  tt.notOk(subjectMatches('weir.a', 'weir.a.hb'))
  tt.notOk(subjectMatches('weir.a.hb', 'weir.a'))
})

t.test('publish, subscribe, unsubscribe, request and flush between two connections', async (tt) => {
  const bus = new LocalBus()
  const a = new BusConnection(bus.connect())
  const b = new BusConnection(bus.connect())
  tt.teardown(async () => {
    await a.close()
    await b.close()
    bus.close()
  })
  const got: string[] = []
  const sub = b.subscribe('x.*', { callback: (_e, m) => got.push(`${m.subject}:${new TextDecoder().decode(m.data)}`) })
  b.subscribe('svc', { callback: (_e, m) => m.respond(new TextEncoder().encode('pong')) })
  await b.flush()
  for (let i = 0; i < 100; i++) a.publish(`x.${i % 3}`, new TextEncoder().encode(String(i)))
  await a.flush()
  await b.flush()
  tt.same(
    got,
    Array.from({ length: 100 }, (_, i) => `x.${i % 3}:${i}`),
    'every message, in order',
  )
  sub.unsubscribe()
  await b.flush()
  a.publish('x.1', new Uint8Array(1))
  await a.flush()
  await b.flush()
  tt.equal(got.length, 100, 'nothing after unsubscribe')
  const reply = await a.request('svc', new Uint8Array(0), { timeout: 1000 })
  tt.equal(new TextDecoder().decode(reply.data), 'pong')
  await tt.rejects(a.request('nobody', new Uint8Array(0), { timeout: 100 }), /no answer on nobody within 100 ms/)
  await a.close()
  tt.ok(a.isClosed())
  tt.throws(() => a.publish('x.1', new Uint8Array(1)), /closed/)
})

t.test('the shared store: calls, errors with their class, a lease released when its worker goes', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-proxy-'))
  const store = new EmbeddedStore({ dir })
  await store.open()
  const server = new StoreServer(store)
  const endA = server.connect()
  const endB = server.connect()
  const a = new StoreClient(endA, store.description)
  const b = new StoreClient(endB, store.description)
  tt.teardown(async () => {
    await a.close()
    await b.close()
    await server.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  tt.same(await a.listSnapshots('j'), [])
  const lease = await a.acquireLease('j', { expiryMs: 60_000 })
  tt.equal(lease.epoch, 1)
  const refused = await b.acquireLease('j').catch((e: unknown) => e)
  tt.ok(refused instanceof JobAlreadyRunningError, 'the error keeps its class', { refused })
  tt.match((refused as Error).message, /j/)
  const notBegun = await a.completeSnapshot('j', 99, { operators: [] } as never).catch((e: unknown) => e)
  tt.ok(notBegun instanceof Error && !(notBegun instanceof JobAlreadyRunningError), 'another error', { notBegun })
  // The worker holding the lease ends: the lease is released at once, so another worker can take it.
  await server.disconnect(endA)
  const next = await b.acquireLease('j', { expiryMs: 60_000 })
  tt.equal(next.epoch, 2, 'taken again with a newer epoch')
  await next.release()
})
