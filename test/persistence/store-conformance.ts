/**
 * The behaviour every `SnapshotStore` must have (docs/architecture.md section 8), run against each store by
 * its own test file.
 */
import type { Test } from 'tap'
import { hostname } from 'node:os'
import { CorruptSnapshotError, DuplicateChunkError, FencedError, JobAlreadyRunningError, SnapshotStateError } from '../../persistence/errors.ts'
import type { BeginSnapshot, SnapshotLayout, SnapshotStore, StateChunk } from '../../persistence/store.ts'

export interface StoreFixture {
  /** An opened store over empty storage, holding the leases of jobs `orders` and `other`. */
  store: SnapshotStore
  /** Opens a second instance over the same storage, as a restarted process would. */
  reopen(): Promise<SnapshotStore>
  /** Closes every instance and removes the storage. */
  cleanup(): Promise<void>
}

const MiB = 1024 * 1024

export const layout: SnapshotLayout = {
  maxParallelism: 128,
  operators: [
    { uid: 'source', parallelism: 1 },
    { uid: 'counter', parallelism: 2 },
  ],
}

export function begin(job: string, id: number, kind: BeginSnapshot['kind'] = 'checkpoint'): BeginSnapshot {
  return { job, id, kind, attempt: 0, layout, triggeredAt: 1_700_000_000_000 + id }
}

/** Deterministic bytes that differ per seed, so a chunk read back under the wrong address shows. */
export function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

export function keyed(operatorUid: string, index: number, length = 64): StateChunk {
  return { operatorUid, kind: 'keyed', index, format: 1, data: bytes(length, index * 31 + operatorUid.length) }
}

export function operatorChunk(operatorUid: string, index: number, length = 32): StateChunk {
  return { operatorUid, kind: 'operator', index, format: 2, data: bytes(length, 1000 + index) }
}

export const done = { completedAt: 1_700_000_100_000, durationMs: 12.5 }

/** Chunks as comparable plain values: addresses plus data as hex. */
export function plain(chunks: readonly StateChunk[]): object[] {
  return chunks.map((c) => ({
    operatorUid: c.operatorUid,
    kind: c.kind,
    index: c.index,
    format: c.format,
    data: Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength).toString('hex'),
  }))
}

/** Chunks in the order `readChunks` promises: operator uid, kind, index. */
export function sorted(chunks: readonly StateChunk[]): StateChunk[] {
  return [...chunks].sort((a, b) =>
    a.operatorUid !== b.operatorUid ? (a.operatorUid < b.operatorUid ? -1 : 1) : a.kind !== b.kind ? (a.kind < b.kind ? -1 : 1) : a.index - b.index,
  )
}

/** Asserts that `promise` rejects with an instance of `type` whose fields match `fields`. */
export async function rejectsWith(
  t: Test,
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => Error,
  fields: object = {},
): Promise<Error | undefined> {
  try {
    await promise
  } catch (err) {
    t.type(err, type)
    t.match(err, fields)
    return err as Error
  }
  t.fail(`expected a rejection with ${type.name}`)
  return undefined
}

/**
 * A fixture for a store that `open` creates on some location (a folder, a schema): `reopen` opens
 * another instance on the same location, `cleanup` closes every instance and then removes it.
 */
export async function storeFixture(open: () => Promise<SnapshotStore>, remove: () => Promise<void>): Promise<StoreFixture> {
  const stores: SnapshotStore[] = [await open()]
  // Every mutation needs the job's lease; the specs below write to these two jobs.
  for (const job of ['orders', 'other']) await stores[0]!.acquireLease(job)
  return {
    store: stores[0]!,
    reopen: async () => {
      const store = await open()
      stores.push(store)
      return store
    },
    cleanup: async () => {
      for (const store of stores) await store.close()
      await remove()
    },
  }
}

export function storeConformance(t: Test, name: string, makeStore: () => Promise<StoreFixture>): void {
  const spec = (title: string, body: (t: Test, fixture: StoreFixture) => Promise<void>): void => {
    t.test(`${name} - ${title}`, async (t) => {
      const fixture = await makeStore()
      t.teardown(() => fixture.cleanup())
      await body(t, fixture)
    })
  }

  spec('a completed snapshot reads back byte for byte', async (t, { store }) => {
    const first = [keyed('counter', 0), keyed('counter', 1, 0), keyed('counter', 127, 300)]
    const second = [operatorChunk('source', 0), keyed('map', 5)]
    await store.beginSnapshot(begin('orders', 1))
    t.equal(await store.writeChunks('orders', 1, first), 64 + 0 + 300)
    t.equal(await store.writeChunks('orders', 1, second), 32 + 64)
    const info = await store.completeSnapshot('orders', 1, done)
    t.match(info, { job: 'orders', id: 1, kind: 'checkpoint', status: 'completed', attempt: 0, triggeredAt: 1_700_000_000_001 })
    t.equal(info.completedAt, done.completedAt)
    t.equal(info.durationMs, done.durationMs)
    t.same(info.layout, layout)
    t.same(await store.getSnapshot('orders', 1), info, 'getSnapshot returns what completeSnapshot did')
    const read = await store.readChunks('orders', 1)
    t.same(plain(read), plain(sorted([...first, ...second])))
    t.ok(read.every((c) => c.data instanceof Uint8Array))
  })

  spec('readChunks filters by operator, kind and indexes', async (t, { store }) => {
    const chunks = [keyed('counter', 0), keyed('counter', 1), keyed('counter', 2), operatorChunk('counter', 0), operatorChunk('source', 0), keyed('map', 1)]
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, chunks)
    await store.completeSnapshot('orders', 1, done)
    t.same(plain(await store.readChunks('orders', 1, { operatorUid: 'counter' })), plain(sorted(chunks.filter((c) => c.operatorUid === 'counter'))))
    t.same(plain(await store.readChunks('orders', 1, { kind: 'operator' })), plain(sorted(chunks.filter((c) => c.kind === 'operator'))))
    t.same(
      plain(await store.readChunks('orders', 1, { operatorUid: 'counter', kind: 'keyed', indexes: [2, 0, 99] })),
      plain([keyed('counter', 0), keyed('counter', 2)]),
    )
    t.same(await store.readChunks('orders', 1, { indexes: [] }), [], 'an empty index list selects nothing')
    t.same(await store.readChunks('orders', 1, { operatorUid: 'nobody' }), [])
  })

  spec('a pending or aborted snapshot is never the latest completed', async (t, { store }) => {
    t.equal(await store.latestCompleted('orders'), undefined, 'none for a job never seen')
    await store.beginSnapshot(begin('orders', 1))
    await store.completeSnapshot('orders', 1, done)
    await store.beginSnapshot(begin('orders', 2))
    await store.beginSnapshot(begin('orders', 3))
    await store.writeChunks('orders', 3, [keyed('counter', 0)])
    await store.abortSnapshot('orders', 3, 'barrier timeout')
    t.equal((await store.latestCompleted('orders'))?.id, 1)
    await store.beginSnapshot(begin('orders', 4, 'savepoint'))
    await store.completeSnapshot('orders', 4, done)
    t.match(await store.latestCompleted('orders'), { id: 4, kind: 'savepoint' }, 'any kind counts')
    t.equal(await store.latestCompleted('other'), undefined, 'jobs do not see each other')
  })

  spec('writing to a snapshot that is not pending is refused and leaves completed data intact', async (t, { store }) => {
    const original = [keyed('counter', 0), keyed('counter', 1)]
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, original)
    await store.completeSnapshot('orders', 1, done)
    await store.beginSnapshot(begin('orders', 2))
    await store.abortSnapshot('orders', 2, 'operator failed')

    const late = [keyed('counter', 5)]
    await rejectsWith(t, store.writeChunks('orders', 1, late), SnapshotStateError, { job: 'orders', snapshotId: 1, status: 'completed', retryable: false })
    await rejectsWith(t, store.writeChunks('orders', 1, []), SnapshotStateError, { status: 'completed' }, )
    await rejectsWith(t, store.writeChunks('orders', 2, late), SnapshotStateError, { snapshotId: 2, status: 'aborted' })
    await rejectsWith(t, store.writeChunks('orders', 9, late), SnapshotStateError, { snapshotId: 9, status: undefined })
    t.same(plain(await store.readChunks('orders', 1)), plain(original))
    t.equal((await store.getSnapshot('orders', 1))?.sizeBytes, 128)
  })

  spec('beginning an existing id is refused', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, [keyed('counter', 0)])
    await rejectsWith(t, store.beginSnapshot(begin('orders', 1, 'savepoint')), SnapshotStateError, { snapshotId: 1, status: 'pending' })
    await store.completeSnapshot('orders', 1, done)
    await rejectsWith(t, store.beginSnapshot(begin('orders', 1)), SnapshotStateError, { status: 'completed' })
    t.match(await store.getSnapshot('orders', 1), { kind: 'checkpoint', status: 'completed' }, 'the first one is untouched')
    t.same(plain(await store.readChunks('orders', 1)), plain([keyed('counter', 0)]))
    await store.beginSnapshot(begin('orders', 2))
    await store.abortSnapshot('orders', 2, 'x')
    await rejectsWith(t, store.beginSnapshot(begin('orders', 2)), SnapshotStateError, { status: 'aborted' })
  })

  spec('completing a snapshot that is not pending is refused', async (t, { store }) => {
    await rejectsWith(t, store.completeSnapshot('orders', 1, done), SnapshotStateError, { status: undefined })
    await store.beginSnapshot(begin('orders', 1))
    await store.completeSnapshot('orders', 1, done)
    await rejectsWith(t, store.completeSnapshot('orders', 1, { completedAt: 1, durationMs: 1 }), SnapshotStateError, { status: 'completed' })
    t.equal((await store.getSnapshot('orders', 1))?.completedAt, done.completedAt)
    await store.beginSnapshot(begin('orders', 2))
    await store.abortSnapshot('orders', 2, 'x')
    await rejectsWith(t, store.completeSnapshot('orders', 2, done), SnapshotStateError, { status: 'aborted' })
  })

  spec('abort drops the chunks and never touches a completed snapshot', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, [keyed('counter', 0)])
    await store.completeSnapshot('orders', 1, done)
    await store.beginSnapshot(begin('orders', 2))
    await store.writeChunks('orders', 2, [keyed('counter', 0), keyed('counter', 1)])
    await store.abortSnapshot('orders', 2, 'barrier timeout')
    t.match(await store.getSnapshot('orders', 2), { status: 'aborted', reason: 'barrier timeout' })
    await rejectsWith(t, store.readChunks('orders', 2), SnapshotStateError, { status: 'aborted' })
    await store.abortSnapshot('orders', 2, 'again')
    t.match(await store.getSnapshot('orders', 2), { reason: 'barrier timeout' }, 'aborting twice keeps the first reason')

    await rejectsWith(t, store.abortSnapshot('orders', 1, 'too late'), SnapshotStateError, { status: 'completed' })
    const completed = await store.getSnapshot('orders', 1)
    t.equal(completed?.status, 'completed')
    t.equal(completed?.reason, undefined)
    t.same(plain(await store.readChunks('orders', 1)), plain([keyed('counter', 0)]))
    await rejectsWith(t, store.abortSnapshot('orders', 7, 'unknown'), SnapshotStateError, { status: undefined })
  })

  spec('reading a snapshot that is not completed is refused', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, [keyed('counter', 0)])
    await rejectsWith(t, store.readChunks('orders', 1), SnapshotStateError, { status: 'pending' })
    await rejectsWith(t, store.readChunks('orders', 2), SnapshotStateError, { status: undefined })
  })

  spec('discard deletes a snapshot and its chunks', async (t, { store }) => {
    for (const id of [1, 2, 3]) {
      await store.beginSnapshot(begin('orders', id))
      await store.writeChunks('orders', id, [keyed('counter', id)])
    }
    await store.completeSnapshot('orders', 1, done)
    await store.completeSnapshot('orders', 2, done)
    await store.discardSnapshot('orders', 2)
    await store.discardSnapshot('orders', 3)
    t.equal(await store.getSnapshot('orders', 2), undefined)
    await rejectsWith(t, store.readChunks('orders', 2), SnapshotStateError, { status: undefined })
    t.same((await store.listSnapshots('orders')).map((s) => s.id), [1])
    t.equal((await store.latestCompleted('orders'))?.id, 1)
    t.same(plain(await store.readChunks('orders', 1)), plain([keyed('counter', 1)]))
    await store.discardSnapshot('orders', 42)
    t.pass('discarding an unknown snapshot is harmless')
    t.equal(await store.nextSnapshotId('orders'), 4, 'discarded ids are not handed out again')
  })

  spec('nextSnapshotId is above every begun id, pending ones too', async (t, { store }) => {
    t.equal(await store.nextSnapshotId('orders'), 1, 'a new job starts at 1')
    await store.beginSnapshot(begin('orders', 5))
    t.equal(await store.nextSnapshotId('orders'), 6, 'a pending snapshot counts')
    await store.beginSnapshot(begin('orders', 3))
    t.equal(await store.nextSnapshotId('orders'), 6)
    await store.abortSnapshot('orders', 5, 'x')
    t.equal(await store.nextSnapshotId('orders'), 6, 'an aborted snapshot counts')
    await store.discardSnapshot('orders', 5)
    t.equal(await store.nextSnapshotId('orders'), 6, 'a discarded snapshot counts')
    t.equal(await store.nextSnapshotId('other'), 1, 'jobs count separately')
  })

  spec('listSnapshots returns a job\'s snapshots by id ascending', async (t, { store }) => {
    for (const id of [10, 2, 7]) await store.beginSnapshot(begin('orders', id))
    await store.beginSnapshot(begin('other', 1))
    await store.completeSnapshot('orders', 7, done)
    await store.abortSnapshot('orders', 10, 'x')
    const list = await store.listSnapshots('orders')
    t.same(list.map((s) => [s.id, s.status]), [[2, 'pending'], [7, 'completed'], [10, 'aborted']])
    t.ok(list.every((s) => s.job === 'orders'))
    t.same(await store.listSnapshots('nobody'), [])
  })

  spec('sizeBytes is the sum of chunk data bytes', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, [keyed('counter', 0, 1000), keyed('counter', 1, 24)])
    await store.writeChunks('orders', 1, [operatorChunk('source', 0, 7)])
    t.equal((await store.completeSnapshot('orders', 1, done)).sizeBytes, 1031)
    await store.beginSnapshot(begin('orders', 2))
    t.equal((await store.completeSnapshot('orders', 2, done)).sizeBytes, 0, 'an empty snapshot has size 0')
  })

  spec('one write may carry hundreds of chunks, some of 1 MiB', async (t, { store }) => {
    const chunks = Array.from({ length: 300 }, (_, i) => keyed('counter', i, i % 50 === 0 ? MiB : 100 + i))
    const total = chunks.reduce((sum, c) => sum + c.data.byteLength, 0)
    await store.beginSnapshot(begin('orders', 1))
    t.equal(await store.writeChunks('orders', 1, chunks), total)
    t.equal((await store.completeSnapshot('orders', 1, done)).sizeBytes, total)
    const read = await store.readChunks('orders', 1)
    t.equal(read.length, 300)
    t.ok(
      read.every((c, i) => c.index === i && Buffer.compare(c.data, chunks[i]!.data) === 0),
      'every chunk is byte-exact',
    )
  })

  spec('an empty write is accepted and writes nothing', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    t.equal(await store.writeChunks('orders', 1, []), 0)
    await store.completeSnapshot('orders', 1, done)
    t.same(await store.readChunks('orders', 1), [])
  })

  spec('concurrent writes to one snapshot all land', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    const batches = Array.from({ length: 8 }, (_, b) => Array.from({ length: 16 }, (_, i) => keyed('counter', b * 16 + i, 200)))
    await Promise.all(batches.map((batch) => store.writeChunks('orders', 1, batch)))
    t.equal((await store.completeSnapshot('orders', 1, done)).sizeBytes, 8 * 16 * 200)
    t.same(plain(await store.readChunks('orders', 1)), plain(batches.flat()))
  })

  spec('a chunk address written twice is refused', async (t, { store }) => {
    await store.beginSnapshot(begin('orders', 1))
    await rejectsWith(t, store.writeChunks('orders', 1, [keyed('counter', 3), keyed('counter', 3, 10)]), DuplicateChunkError, {
      operatorUid: 'counter',
      kind: 'keyed',
      index: 3,
    })
    await store.writeChunks('orders', 1, [keyed('counter', 3), operatorChunk('counter', 3)])
    await rejectsWith(t, store.writeChunks('orders', 1, [keyed('counter', 4), keyed('counter', 3, 10)]), DuplicateChunkError, {
      index: 3,
    })
    await store.completeSnapshot('orders', 1, done)
    t.same(plain(await store.readChunks('orders', 1)), plain([keyed('counter', 3), operatorChunk('counter', 3)]), 'a refused write writes nothing')
  })

  spec('a re-opened store sees the same data', async (t, { store, reopen }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.writeChunks('orders', 1, [keyed('counter', 0), operatorChunk('source', 0)])
    const info = await store.completeSnapshot('orders', 1, done)
    await store.beginSnapshot(begin('orders', 2))
    await store.writeChunks('orders', 2, [keyed('counter', 0)])

    // The first instance stops (and so releases the job) as a process would before a restart.
    await store.close()
    const again = await reopen()
    await again.acquireLease('orders')
    t.same(await again.getSnapshot('orders', 1), info)
    t.same(plain(await again.readChunks('orders', 1)), plain(sorted([keyed('counter', 0), operatorChunk('source', 0)])))
    t.equal(await again.nextSnapshotId('orders'), 3)
    await rejectsWith(t, again.writeChunks('orders', 2, [keyed('counter', 0)]), DuplicateChunkError, { index: 0 })
    await again.writeChunks('orders', 2, [keyed('counter', 1)])
    t.equal((await again.completeSnapshot('orders', 2, done)).sizeBytes, 128, 'sizes include what the first instance wrote')
  })

  spec('open() twice is harmless', async (t, { store }) => {
    await store.open()
    await Promise.all([store.open(), store.open()])
    await store.beginSnapshot(begin('orders', 1))
    await store.completeSnapshot('orders', 1, done)
    t.equal((await store.latestCompleted('orders'))?.id, 1)
  })

  spec('bad job names and arguments fail at once with a TypeError', async (t, { store }) => {
    for (const job of ['', 'a/b', '..', 'has space', 'x'.repeat(129), '../escape']) {
      await rejectsWith(t, store.nextSnapshotId(job), TypeError)
      await rejectsWith(t, store.beginSnapshot(begin(job, 1)), TypeError)
    }
    await rejectsWith(t, store.getSnapshot('orders', -1), TypeError)
    await rejectsWith(t, store.getSnapshot('orders', 1.5), TypeError)
    await store.beginSnapshot(begin('orders', 1))
    await rejectsWith(t, store.writeChunks('orders', 1, [{ ...keyed('counter', 0), kind: 'bogus' as 'keyed' }]), TypeError)
    await rejectsWith(t, store.writeChunks('orders', 1, [{ ...keyed('counter', 0), index: -1 }]), TypeError)
    t.equal(await store.nextSnapshotId('A-job_with.dots-1'), 1, 'letters, digits, _ . - are fine')
  })

  spec('lease - a mutation without the lease is refused with FencedError and changes nothing', async (t, { store, reopen }) => {
    await store.beginSnapshot(begin('orders', 1))
    await store.completeSnapshot('orders', 1, done)
    await store.beginSnapshot(begin('orders', 2))
    const before = await store.listSnapshots('orders')
    const other = await reopen()
    const message = "cannot begin a snapshot for job 'orders': this store holds no lease on the job; call acquireLease('orders') first"
    const err = await rejectsWith(t, other.beginSnapshot(begin('orders', 3)), FencedError, { job: 'orders', heldEpoch: undefined, retryable: false })
    t.equal(err?.message, message)
    await rejectsWith(t, other.writeChunks('orders', 2, [keyed('counter', 0)]), FencedError, { job: 'orders' })
    await rejectsWith(t, other.completeSnapshot('orders', 2, done), FencedError, { job: 'orders' })
    await rejectsWith(t, other.abortSnapshot('orders', 2, 'x'), FencedError, { job: 'orders' })
    await rejectsWith(t, other.discardSnapshot('orders', 1), FencedError, { job: 'orders' })
    await rejectsWith(t, store.beginSnapshot(begin('third', 1)), FencedError, { job: 'third' }, )
    t.same(await store.listSnapshots('orders'), before, 'nothing changed')
    t.same(await store.listSnapshots('third'), [])
  })

  spec('lease - a second holder is refused at once with JobAlreadyRunningError naming the holder', async (t, { store, reopen }) => {
    const lease = await store.acquireLease('solo')
    t.match(lease, { job: 'solo', host: hostname(), pid: process.pid })
    t.ok(lease.epoch >= 1 && Math.abs(lease.since - Date.now()) < 60_000)
    await store.beginSnapshot(begin('solo', 1))
    const before = await store.listSnapshots('solo')
    const other = await reopen()
    const started = Date.now()
    const err = await rejectsWith(t, other.acquireLease('solo'), JobAlreadyRunningError, {
      job: 'solo',
      holder: { owner: lease.owner, host: hostname(), pid: process.pid, since: lease.since },
      retryable: false,
    })
    t.ok(Date.now() - started < 1000, 'refused at once, not after the expiry')
    t.equal(err?.message, `job 'solo' is already running on host ${hostname()} as pid ${process.pid} since ${new Date(lease.since).toISOString()}; stop that runner first (or wait for it to finish)`)
    await rejectsWith(t, store.acquireLease('solo'), JobAlreadyRunningError, { job: 'solo' })
    t.same(await other.listSnapshots('solo'), before, 'nothing changed')
    await store.beginSnapshot(begin('solo', 2))
    t.pass('the holder goes on')
  })

  spec('lease - a released lease is taken at once with a higher epoch; the old holder is refused', async (t, { store, reopen }) => {
    const first = await store.acquireLease('solo')
    await store.beginSnapshot(begin('solo', 1))
    await first.release()
    await first.release()
    const other = await reopen()
    const second = await other.acquireLease('solo')
    t.ok(second.epoch > first.epoch, `epoch ${second.epoch} > ${first.epoch}`)
    await rejectsWith(t, store.abortSnapshot('solo', 1, 'x'), FencedError, { job: 'solo' })
    await other.abortSnapshot('solo', 1, 'left pending')
    t.match(await other.getSnapshot('solo', 1), { status: 'aborted', reason: 'left pending' })
    await second.release()
    const third = await store.acquireLease('solo')
    t.ok(third.epoch > second.epoch, 'epochs never go back after a release')
  })

  /** A layout that requires every key group of 'counter' (8 of them) and the offset of each 'source' instance. */
  const required: SnapshotLayout = {
    maxParallelism: 8,
    operators: [
      { uid: 'source', parallelism: 2, chunks: ['operator'] },
      { uid: 'counter', parallelism: 2, chunks: ['keyed'] },
      { uid: 'sink', parallelism: 1 },
    ],
  }
  const everyChunk = (): StateChunk[] => [
    operatorChunk('source', 0),
    operatorChunk('source', 1),
    ...Array.from({ length: 8 }, (_, i) => keyed('counter', i, i % 2 === 0 ? 0 : 40)),
  ]

  spec('manifest - a complete snapshot verifies, empty key groups included', async (t, { store, reopen }) => {
    await store.beginSnapshot({ ...begin('orders', 1), layout: required })
    await store.writeChunks('orders', 1, everyChunk().slice(0, 5))
    await store.writeChunks('orders', 1, everyChunk().slice(5))
    const info = await store.completeSnapshot('orders', 1, done)
    t.same(await (await reopen()).verifySnapshot('orders', 1), info, 'verifies, also from another instance')
    t.same(
      (await store.readChunks('orders', 1, { operatorUid: 'counter' })).map((c) => c.data.byteLength),
      [0, 40, 0, 40, 0, 40, 0, 40],
      'empty key groups are chunks of no bytes',
    )
  })

  spec('manifest - completeSnapshot refuses a snapshot missing a required chunk, naming it', async (t, { store }) => {
    await store.beginSnapshot({ ...begin('orders', 1), layout: required })
    await store.writeChunks('orders', 1, everyChunk().filter((c) => !(c.kind === 'keyed' && c.index === 3) && !(c.kind === 'operator' && c.index === 1)))
    const err = await rejectsWith(t, store.completeSnapshot('orders', 1, done), CorruptSnapshotError, { job: 'orders', snapshotId: 1 })
    t.same((err as CorruptSnapshotError).problems, [
      "operator chunk (instance 1) of operator 'source' was never written, so the snapshot cannot be completed",
      "keyed chunk (key group 3) of operator 'counter' was never written, so the snapshot cannot be completed",
    ])
    t.equal((await store.getSnapshot('orders', 1))?.status, 'pending', 'it stays pending (and can be aborted)')
    await store.abortSnapshot('orders', 1, 'incomplete')
  })

  spec('manifest - verifySnapshot of a snapshot that is not completed is a SnapshotStateError', async (t, { store }) => {
    await rejectsWith(t, store.verifySnapshot('orders', 1), SnapshotStateError, { status: undefined })
    await store.beginSnapshot(begin('orders', 1))
    await rejectsWith(t, store.verifySnapshot('orders', 1), SnapshotStateError, { status: 'pending' })
  })

  spec('bad layout chunk kinds fail at once with a TypeError', async (t, { store }) => {
    const bad = { maxParallelism: 8, operators: [{ uid: 'counter', parallelism: 1, chunks: ['keys' as 'keyed'] }] }
    await rejectsWith(t, store.beginSnapshot({ ...begin('orders', 1), layout: bad }), TypeError)
  })
}
