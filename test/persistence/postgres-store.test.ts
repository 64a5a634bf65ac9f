import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import pg from 'pg'
import t from 'tap'
import { CorruptChunkError, FencedError, ReadOnlyStoreError, SnapshotStateError, StoreSchemaError, StoreUnavailableError } from '../../persistence/errors.ts'
import { latestSchemaVersion, migrations } from '../../persistence/migrations.ts'
import { PostgresStore, withFallbackUser } from '../../persistence/postgres-store.ts'
import { begin, done, keyed, plain, rejectsWith, storeConformance, storeFixture } from './store-conformance.ts'

const url = process.env.WEIR_TEST_PG_URL ?? 'postgres://127.0.0.1:5432/test'
// Every schema of this run shares a random prefix, so parallel runs never meet and the teardown
// can drop whatever a failed test left behind.
const prefix = `weir_test_${randomBytes(4).toString('hex')}`
let schemas = 0
const admin = new pg.Pool({ connectionString: adminUrl(), max: 2 })

/** Direct access for the tests; like the store, falls back to the OS user when the URL has none. */
function adminUrl(): string {
  return withFallbackUser(url)
}

t.teardown(async () => {
  const { rows } = await admin.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [prefix])
  for (const { nspname } of rows) await admin.query(`DROP SCHEMA ${pg.escapeIdentifier(nspname)} CASCADE`)
  await admin.end()
})

function newSchema(): string {
  return `${prefix}_${schemas++}`
}

async function opened(schema: string): Promise<PostgresStore> {
  const store = new PostgresStore({ connectionString: url, schema, poolSize: 4 })
  await store.open()
  return store
}

async function dropSchema(schema: string): Promise<void> {
  await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
}

storeConformance(t, 'postgres store', async () => {
  const schema = newSchema()
  return storeFixture(
    () => opened(schema),
    () => dropSchema(schema),
  )
})

/** A port on 127.0.0.1 that nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())))
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

t.test('postgres store - an unreachable database is StoreUnavailableError naming host and port, quickly', async (t) => {
  const port = await closedPort()
  const store = new PostgresStore({ connectionString: `postgres://weir:s3cret-password@127.0.0.1:${port}/weir`, connectTimeoutMs: 2000 })
  t.notMatch(store.description, /s3cret/, 'the description never shows the password')
  const started = Date.now()
  const err = await rejectsWith(t, store.open(), StoreUnavailableError, { target: `127.0.0.1:${port}/weir`, retryable: true })
  t.ok(Date.now() - started < 2000, 'fails before the connect timeout')
  t.match(err?.message, `127.0.0.1:${port}`)
  t.notMatch(err?.message, /s3cret/)
  t.match(err?.cause, { code: 'ECONNREFUSED' })
  await store.close()
})

t.test('postgres store - a corrupt chunk is CorruptChunkError naming operator and key group; others stay readable', async (t) => {
  const schema = newSchema()
  const store = await opened(schema)
  t.teardown(async () => {
    await store.close()
    await dropSchema(schema)
  })
  await store.acquireLease('orders')
  await store.beginSnapshot(begin('orders', 1))
  await store.writeChunks('orders', 1, [keyed('counter', 0), keyed('counter', 1), keyed('counter', 2), keyed('counter', 3)])
  await store.completeSnapshot('orders', 1, done)
  const flipped = await admin.query(
    `UPDATE ${pg.escapeIdentifier(schema)}.state_chunks SET data = set_byte(data, 7, get_byte(data, 7) # 1)
     WHERE job = 'orders' AND snapshot_id = 1 AND operator_uid = 'counter' AND kind = 'keyed' AND idx = 2`,
  )
  t.equal(flipped.rowCount, 1)

  const err = await rejectsWith(t, store.readChunks('orders', 1), CorruptChunkError, {
    job: 'orders',
    snapshotId: 1,
    operatorUid: 'counter',
    kind: 'keyed',
    index: 2,
    retryable: false,
  })
  t.match(err?.message, /key group 2\b.*operator 'counter'/)
  t.same(
    plain(await store.readChunks('orders', 1, { indexes: [0, 1, 3] })),
    plain([keyed('counter', 0), keyed('counter', 1), keyed('counter', 3)]),
  )
})

t.test('postgres store - two concurrent open() record each migration once', async (t) => {
  const schema = newSchema()
  const stores = [0, 1, 2].map(() => new PostgresStore({ connectionString: url, schema, poolSize: 2 }))
  t.teardown(async () => {
    for (const store of stores) await store.close()
    await dropSchema(schema)
  })
  await Promise.all(stores.map((store) => store.open()))
  const { rows } = await admin.query<{ version: number; name: string }>(
    `SELECT version, name FROM ${pg.escapeIdentifier(schema)}.schema_migrations ORDER BY version`,
  )
  t.same(rows, migrations.map((m) => ({ version: m.version, name: m.name })))
})

t.test('postgres store - a schema newer than this code is StoreSchemaError', async (t) => {
  const schema = newSchema()
  const first = await opened(schema)
  await first.close()
  t.teardown(() => dropSchema(schema))
  await admin.query(`INSERT INTO ${pg.escapeIdentifier(schema)}.schema_migrations (version, name) VALUES ($1, 'from the future')`, [
    latestSchemaVersion + 1,
  ])
  const store = new PostgresStore({ connectionString: url, schema })
  await rejectsWith(t, store.open(), StoreSchemaError, {
    foundVersion: latestSchemaVersion + 1,
    knownVersion: latestSchemaVersion,
    retryable: false,
  })
  await store.close()
})

t.test('postgres store - bad options fail when the store is made, naming the option', async (t) => {
  for (const schema of ['', 'weir; drop table x', 'pg_weir', '1weir', 'a'.repeat(64), 'wei"r']) {
    t.throws(() => new PostgresStore({ connectionString: url, schema }), { name: 'InvalidOptionError', option: 'postgres.schema', retryable: false }, `schema ${JSON.stringify(schema)}`)
  }
  t.throws(() => new PostgresStore({ connectionString: '' }), { name: 'InvalidOptionError', option: 'postgres.connectionString' })
  t.throws(() => new PostgresStore({ connectionString: url, poolSize: 0 }), { name: 'InvalidOptionError', option: 'postgres.poolSize' })
  t.throws(() => new PostgresStore({ connectionString: url, poolSize: 2.5 }), { name: 'InvalidOptionError', option: 'postgres.poolSize' })
  t.throws(() => new PostgresStore({ connectionString: url, connectTimeoutMs: -1 }), { name: 'InvalidOptionError', option: 'postgres.connectTimeoutMs' })
  t.throws(() => new PostgresStore({ connectionString: url, statementTimeoutMs: 2 ** 31 }), {
    name: 'InvalidOptionError',
    message: 'option postgres.statementTimeoutMs: expected an integer number of milliseconds from 1 to 2147483647 (about 24.8 days, the longest a timer can wait), got 2147483648',
  })
  t.throws(() => new PostgresStore({ connectionString: url, statementTimeoutMs: 5000, queryTimeoutMs: 4000 }), {
    name: 'InvalidOptionError',
    option: 'postgres.queryTimeoutMs',
    expected: /from 5000 to/,
  })
  t.throws(() => new PostgresStore({ connectionString: url, statementTimeout: 5000 } as never), { name: 'UnknownOptionError', option: 'postgres.statementTimeout' })
  t.doesNotThrow(() => new PostgresStore({ connectionString: url, statementTimeoutMs: 60_000 }), 'queryTimeoutMs left out follows statementTimeoutMs')
  t.equal(new PostgresStore({ connectionString: 'postgres://u:p@db.example:6543/prod' }).description, 'postgres(weir@db.example:6543/prod)')
})

t.test('postgres store - a statement held past statementTimeoutMs (a locked table) fails with a retryable StoreUnavailableError', async (t) => {
  const schema = newSchema()
  const store = new PostgresStore({ connectionString: url, schema, statementTimeoutMs: 300 })
  t.teardown(() => store.close())
  await store.open()
  const locker = await admin.connect()
  t.teardown(() => locker.release())
  await locker.query('BEGIN')
  await locker.query(`LOCK TABLE ${pg.escapeIdentifier(schema)}.snapshots IN ACCESS EXCLUSIVE MODE`)
  const began = performance.now()
  const err = await store.listSnapshots('orders').catch((e: unknown) => e)
  const waited = performance.now() - began
  await locker.query('ROLLBACK')
  t.ok(err instanceof StoreUnavailableError, 'a StoreUnavailableError')
  t.equal((err as StoreUnavailableError).retryable, true)
  t.match((err as Error).message, 'a statement ran past statementTimeoutMs (300 ms) (57014)')
  t.equal(((err as Error).cause as { code?: string }).code, '57014', 'classified by its SQLSTATE')
  t.ok(waited >= 290 && waited < 3000, `failed at the deadline (${Math.round(waited)} ms)`)
  t.same(await store.listSnapshots('orders'), [], 'the store works again once the lock is gone')
})

t.test('postgres store - calls before open() fail with a clear message', async (t) => {
  const store = new PostgresStore({ connectionString: url })
  await t.rejects(store.listSnapshots('orders'), /call open\(\) first/)
})

t.test('postgres store - one write of 12 000 tiny chunks (more rows than one statement takes) round-trips', async (t) => {
  const schema = newSchema()
  const store = await opened(schema)
  t.teardown(async () => {
    await store.close()
    await dropSchema(schema)
  })
  const layout = { maxParallelism: 16384, operators: [{ uid: 'op', parallelism: 1 }] }
  await store.acquireLease('bulk')
  await store.beginSnapshot({ job: 'bulk', id: 1, kind: 'checkpoint', attempt: 1, layout, triggeredAt: Date.now() })
  const chunks = Array.from({ length: 12_000 }, (_, i) => ({ operatorUid: 'op', kind: 'keyed' as const, index: i, format: 1, data: new Uint8Array([i & 255, i >> 8]) }))
  t.equal(await store.writeChunks('bulk', 1, chunks), 24_000)
  await store.completeSnapshot('bulk', 1, { completedAt: Date.now(), durationMs: 1 })
  const back = await store.readChunks('bulk', 1)
  t.equal(back.length, 12_000)
  t.same([...back[11_999]!.data], [11_999 & 255, 11_999 >> 8])
})

t.test('postgres store - read-only: a missing schema reads as empty and is never created; no lease, no writes', async (t) => {
  const schema = newSchema()
  t.teardown(() => dropSchema(schema))
  const reader = new PostgresStore({ connectionString: url, schema, readOnly: true })
  t.teardown(() => reader.close())
  await reader.open()
  t.same(await reader.listSnapshots('orders'), [])
  t.equal(await reader.latestCompleted('orders'), undefined)
  t.equal(await reader.getSnapshot('orders', 1), undefined)
  t.equal(await reader.nextSnapshotId('orders'), 1)
  await rejectsWith(t, reader.readChunks('orders', 1), SnapshotStateError, { status: undefined })
  await rejectsWith(t, reader.acquireLease('orders'), ReadOnlyStoreError, { retryable: false })
  await rejectsWith(t, reader.beginSnapshot(begin('orders', 1)), FencedError, { heldEpoch: undefined })
  const { rows } = await admin.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
  t.equal(rows.length, 0, 'the schema was not created')

  const writer = await opened(schema)
  t.teardown(() => writer.close())
  await writer.acquireLease('orders')
  await writer.beginSnapshot(begin('orders', 1))
  await writer.writeChunks('orders', 1, [keyed('counter', 0)])
  await writer.completeSnapshot('orders', 1, done)
  const again = new PostgresStore({ connectionString: url, schema, readOnly: true })
  t.teardown(() => again.close())
  await again.open()
  t.same(plain(await again.readChunks('orders', 1)), plain([keyed('counter', 0)]), 'it reads what a writer wrote, without a lease')
})
