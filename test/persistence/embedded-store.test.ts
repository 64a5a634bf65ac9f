import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Test } from 'tap'
import { EmbeddedStore } from '../../persistence/embedded-store.ts'
import { CorruptChunkError, FencedError, ReadOnlyStoreError, SnapshotStateError, StoreSchemaError, StoreUnavailableError } from '../../persistence/errors.ts'
import { begin, done, keyed, plain, rejectsWith, storeConformance, storeFixture } from './store-conformance.ts'

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-embedded-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function opened(dir: string): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dir })
  await store.open()
  return store
}

/** An opened store holding the lease of job 'orders'. */
async function writer(dir: string): Promise<EmbeddedStore> {
  const store = await opened(dir)
  await store.acquireLease('orders')
  return store
}

storeConformance(t, 'embedded store', async () => {
  const root = await mkdtemp(join(tmpdir(), 'weir-embedded-'))
  const dir = join(root, 'snapshots')
  return storeFixture(
    () => opened(dir),
    () => rm(root, { recursive: true, force: true }),
  )
})

/** A completed snapshot 1 of job 'orders' whose single batch file holds `chunks`. */
async function completedSnapshot(dir: string, chunks = [keyed('counter', 0), keyed('counter', 1), keyed('counter', 2)]) {
  const store = await writer(dir)
  await store.beginSnapshot(begin('orders', 1))
  await store.writeChunks('orders', 1, chunks)
  await store.completeSnapshot('orders', 1, done)
  const snapshotDir = join(dir, 'orders', '1')
  const batch = (await readdir(snapshotDir)).find((name) => name.startsWith('chunks-'))
  if (batch === undefined) throw new Error('no batch file written')
  return { store, batchFile: join(snapshotDir, batch) }
}

t.test('embedded store - a flipped data byte on disk is a CorruptChunkError naming the chunk', async (t) => {
  const dir = await tempDir(t)
  const marker = Buffer.from('weir-corruption-marker:'.repeat(8))
  const victim = { operatorUid: 'counter', kind: 'keyed' as const, index: 2, format: 1, data: new Uint8Array(marker) }
  const { store, batchFile } = await completedSnapshot(dir, [keyed('counter', 0), keyed('counter', 1), victim])
  const file = await readFile(batchFile)
  const at = file.indexOf(marker)
  t.ok(at > 0, 'the payload is stored as-is, so it can be found')
  file[at + 10] = file[at + 10]! ^ 0x01
  await writeFile(batchFile, file)

  const err = await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, {
    job: 'orders',
    snapshotId: 1,
    operatorUid: 'counter',
    kind: 'keyed',
    index: 2,
    retryable: false,
  })
  t.match(err?.message, /key group 2\b.*operator 'counter'/)
  t.same(plain(await store.readChunks('orders', 1, { indexes: [0, 1] })), plain([keyed('counter', 0), keyed('counter', 1)]), 'the other chunks stay readable')
})

t.test('embedded store - a damaged chunk address is detected, not read under the wrong key group', async (t) => {
  const dir = await tempDir(t)
  const { store, batchFile } = await completedSnapshot(dir, [keyed('victim-operator', 0), keyed('counter', 1)])
  const file = await readFile(batchFile)
  const at = file.indexOf('victim-operator')
  file[at] = 'V'.charCodeAt(0)
  await writeFile(batchFile, file)
  await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, { file: batchFile })
})

t.test('embedded store - a truncated or garbage batch file is a CorruptChunkError, not a decoder exception', async (t) => {
  const dir = await tempDir(t)
  const { store, batchFile } = await completedSnapshot(dir)
  const original = await readFile(batchFile)

  await truncate(batchFile, Math.floor(original.length / 2))
  const truncated = await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, { file: batchFile, operatorUid: undefined })
  t.match(truncated?.message, /cannot be decoded/)

  await writeFile(batchFile, Buffer.from('this is not CBOR at all, just text somebody wrote'))
  await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, { file: batchFile })
  await writeFile(batchFile, Buffer.from([0x18, 0x2a])) // valid CBOR, the number 42
  await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, { file: batchFile })

  await rm(batchFile)
  const missing = await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, { file: batchFile })
  t.match(missing?.message, /missing/)
})

t.test('embedded store - files left by a crash are ignored', async (t) => {
  const dir = await tempDir(t)
  const { store } = await completedSnapshot(dir)
  await store.beginSnapshot(begin('orders', 2))
  await store.writeChunks('orders', 2, [keyed('counter', 0)])
  // A crash mid-write leaves temp files; a crash inside beginSnapshot leaves a folder without header.
  await writeFile(join(dir, '.tmp-abc-store.json'), 'half')
  await writeFile(join(dir, 'orders', '.tmp-abc-job.json'), 'half')
  await writeFile(join(dir, 'orders', '1', '.tmp-abc-snapshot.json'), '{"half":')
  await writeFile(join(dir, 'orders', '2', '.tmp-abc-chunks-x.cbor'), Buffer.from([1, 2, 3]))
  await mkdir(join(dir, 'orders', '7'))
  await mkdir(join(dir, 'orders', '.discard-3-abc'))

  await store.close()
  const again = await writer(dir)
  t.same((await again.listSnapshots('orders')).map((s) => [s.id, s.status]), [[1, 'completed'], [2, 'pending']])
  t.equal(await again.getSnapshot('orders', 7), undefined)
  t.equal(await again.nextSnapshotId('orders'), 8, 'a folder without header still counts as begun')
  t.equal((await again.readChunks('orders', 1)).length, 3)

  await again.completeSnapshot('orders', 2, done)
  t.notOk((await readdir(join(dir, 'orders', '2'))).some((name) => name.startsWith('.tmp-')), 'completing sweeps temp files')
  t.same(plain(await again.readChunks('orders', 2)), plain([keyed('counter', 0)]))
  await again.beginSnapshot(begin('orders', 7))
  t.equal((await again.getSnapshot('orders', 7))?.status, 'pending', 'a header-less folder can be begun again')
})

t.test('embedded store - a directory that cannot be created is StoreUnavailableError', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'a-file')
  await writeFile(file, 'not a directory')
  for (const target of [join(file, 'snapshots'), file]) {
    const err = await rejectsWith(t, new EmbeddedStore({ dir: target }).open(), StoreUnavailableError, { target, retryable: true })
    t.ok(err?.cause, 'keeps the file system error as cause')
  }
})

t.test('embedded store - a directory written by a newer Weir is StoreSchemaError', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'store.json'), JSON.stringify({ format: 99 }))
  await rejectsWith(t, new EmbeddedStore({ dir }).open(), StoreSchemaError, { foundVersion: 99, knownVersion: 2, retryable: false })
})

t.test('embedded store - calls before open() fail with a clear message', async (t) => {
  const store = new EmbeddedStore({ dir: join(tmpdir(), 'weir-never-opened') })
  await t.rejects(store.listSnapshots('orders'), /call open\(\) first/)
  t.throws(() => new EmbeddedStore({ dir: '' }), { name: 'InvalidOptionError', option: 'embedded.dir', retryable: false })
  t.throws(() => new EmbeddedStore({ dir: 'x', fsync: false } as never), { name: 'UnknownOptionError', option: 'embedded.fsync' })
  t.throws(() => new EmbeddedStore(null as never), { name: 'InvalidOptionError', option: 'embedded' })
})

t.test('embedded store - kill -9 during writes never leaves a half-written completed snapshot', async (t) => {
  const dir = await tempDir(t)
  const storeModule = fileURLToPath(new URL('../../persistence/embedded-store.ts', import.meta.url))
  const script = join(dir, 'writer.mjs')
  // Takes snapshots back to back, each in several batches, until it is killed.
  await writeFile(
    script,
    `import { EmbeddedStore } from ${JSON.stringify(storeModule)}
     const store = new EmbeddedStore({ dir: ${JSON.stringify(join(dir, 'snapshots'))} })
     await store.open()
     await store.acquireLease('crash')
     const layout = { maxParallelism: 8, operators: [{ uid: 'counter', parallelism: 1 }] }
     let announced = false
     for (let id = 1; ; id++) {
       await store.beginSnapshot({ job: 'crash', id, kind: 'checkpoint', attempt: 0, layout, triggeredAt: id })
       for (let b = 0; b < 4; b++) {
         const chunks = [0, 1].map((i) => ({ operatorUid: 'counter', kind: 'keyed', index: b * 2 + i, format: 1, data: new Uint8Array(20000).fill(id % 251) }))
         await store.writeChunks('crash', id, chunks)
       }
       await store.completeSnapshot('crash', id, { completedAt: id, durationMs: 1 })
       if (id >= 3 && !announced) { announced = true; process.stdout.write('ready\\n') }
     }`,
  )
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`writer exited early with ${code}`)))
    child.stdout.once('data', () => resolve())
  })
  await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 50))
  child.removeAllListeners('exit')
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited

  const store = await opened(join(dir, 'snapshots'))
  const snapshots = await store.listSnapshots('crash')
  const completed = snapshots.filter((s) => s.status === 'completed')
  t.ok(completed.length >= 3, `${completed.length} completed snapshots survived`)
  t.ok(snapshots.filter((s) => s.status === 'pending').length <= 1, 'at most the one in flight is pending')
  for (const info of completed) {
    const chunks = await store.readChunks('crash', info.id)
    t.equal(chunks.length, 8, `snapshot ${info.id} has all its chunks`)
    t.ok(chunks.every((c) => c.data.every((byte) => byte === info.id % 251)), `snapshot ${info.id} holds its own data`)
    t.equal(info.sizeBytes, 8 * 20000)
  }
  const next = await store.nextSnapshotId('crash')
  t.ok(snapshots.every((s) => s.id < next), 'the next id is above every begun one')
  await rejectsWith(t, store.readChunks('crash', next), SnapshotStateError)
})

t.test('embedded store - read-only: a missing folder reads as empty and is never created; no lease, no writes', async (t) => {
  const parent = await tempDir(t)
  const dir = join(parent, 'snapshots')
  const reader = new EmbeddedStore({ dir, readOnly: true })
  await reader.open()
  t.same(await reader.listSnapshots('orders'), [])
  t.equal(await reader.latestCompleted('orders'), undefined)
  t.equal(await reader.nextSnapshotId('orders'), 1)
  await rejectsWith(t, reader.readChunks('orders', 1), SnapshotStateError, { status: undefined })
  const err = await rejectsWith(t, reader.acquireLease('orders'), ReadOnlyStoreError, { retryable: false })
  t.equal(err?.message, `cannot take the lease of job 'orders': snapshot store embedded(${dir}) was opened read-only; use a store made without readOnly to run jobs`)
  await rejectsWith(t, reader.beginSnapshot(begin('orders', 1)), FencedError, { heldEpoch: undefined })
  t.same(await readdir(parent), [], 'nothing was created')

  const { store } = await completedSnapshot(dir)
  await reader.open()
  t.same(await reader.readChunks('orders', 1), await store.readChunks('orders', 1), 'it reads what a writer wrote, without a lease')
})
