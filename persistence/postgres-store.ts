/**
 * A `SnapshotStore` in Postgres (docs/architecture.md section 8): chunks are written in bulk, one
 * transaction per `writeChunks`, and a snapshot's row turns `completed` last, so a half-written
 * snapshot is never restored.
 */
import { userInfo } from 'node:os'
import pg from 'pg'
import type { PoolClient } from 'pg'
import { addressKey, compareAddresses } from './chunk-address.ts'
import { checksum, chunkChecksum } from './checksum.ts'
import {
  CorruptChunkError,
  DuplicateChunkError,
  FencedError,
  JobAlreadyRunningError,
  ReadOnlyStoreError,
  SnapshotStateError,
  StoreSchemaError,
  StoreUnavailableError,
  errorCode,
} from './errors.ts'
import { HeldLease, resolveLeaseOptions, thisHolder } from './lease.ts'
import { takeWhenFree } from './lease-takeover.ts'
import { currentEpoch, lockEpoch, releaseLease, renewLease, takeLease, type Statements } from './postgres-lease.ts'
import { assertJobName } from './job-name.ts'
import { buildManifest, verifyManifest, type ManifestEntry } from './manifest.ts'
import { latestSchemaVersion, migrations } from './migrations.ts'
import { resolvePostgresStoreOptions } from './postgres-options.ts'
import type { PostgresStoreOptions, ResolvedPostgresStoreOptions } from './postgres-options.ts'
import {
  assertBegin,
  assertChunks,
  assertComplete,
  assertFilter,
  assertSnapshotRef,
  dataBytes,
} from './store-arguments.ts'
import type { BeginSnapshot, ChunkFilter, CompleteSnapshot, JobLease, LeaseOptions, SnapshotInfo, SnapshotKind, SnapshotLayout, SnapshotStore, StateChunk } from './store.ts'
import type { ChunkKind, SnapshotStatus } from './snapshot-kinds.ts'

export type { PostgresStoreOptions } from './postgres-options.ts'

/** SQLSTATEs (class 08 aside) and socket errors that mean the server cannot be used right now. */
const CONNECTION_FAILURES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '25P03', // idle_in_transaction_session_timeout: the server ended the session
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])

/** SQLSTATE query_canceled: here, a statement that ran past statement_timeout. */
const QUERY_CANCELED = '57014'


interface SnapshotRow {
  job: string
  id: number
  kind: SnapshotKind
  status: SnapshotStatus
  attempt: number
  layout: SnapshotLayout
  triggered_at: number
  completed_at: number | null
  size_bytes: number | null
  duration_ms: number | null
  reason: string | null
}

interface ChunkRow {
  status: SnapshotStatus
  operator_uid: string | null
  kind: ChunkKind
  idx: number
  format: number
  checksum: string
  /** `chunk`: the checksum covers address, format and data; `data`: data alone (written before schema 2). */
  checksum_scope: 'data' | 'chunk'
  data: Buffer
}

interface InventoryRow {
  operator_uid: string
  kind: ChunkKind
  idx: number
  format: number
  size: number
  checksum: string
}

/**
 * A snapshot store in Postgres. `open()` creates and migrates its schema; several stores, in one
 * process or many, may share a database and schema.
 *
 * @example
 * const store = new PostgresStore({ connectionString: 'postgres://127.0.0.1:5432/weir' })
 * await store.open()
 * const latest = await store.latestCompleted('payments')
 * const chunks = latest && (await store.readChunks('payments', latest.id, { operatorUid: 'counter' }))
 */
export class PostgresStore implements SnapshotStore {
  readonly description: string
  readonly #options: ResolvedPostgresStoreOptions
  /** The schema as a quoted identifier, safe to splice into SQL. */
  readonly #schema: string
  #pool: pg.Pool | undefined
  #opening: Promise<void> | undefined
  /** Read-only over a schema that does not exist (yet): every read finds nothing. */
  #absent = false
  readonly #leases = new Map<string, HeldLease>()
  /** Epochs of other processes' leases this store writes chunks under (cluster nodes, {@link followLease}). */
  readonly #followers = new Map<string, HeldLease>()

  constructor(options: PostgresStoreOptions) {
    this.#options = resolvePostgresStoreOptions(options)
    this.#schema = pg.escapeIdentifier(this.#options.schema)
    this.description = `postgres(${this.#options.schema}@${this.#options.target})`
  }

  open(): Promise<void> {
    this.#opening ??= this.#open().catch(async (err: unknown) => {
      this.#opening = undefined
      await this.#endPool()
      throw err
    })
    return this.#opening
  }

  async close(): Promise<void> {
    for (const lease of [...this.#leases.values(), ...this.#followers.values()]) await lease.release().catch(() => undefined)
    this.#opening = undefined
    await this.#endPool()
  }

  /**
   * Lets this store write chunks of `job` under the lease another process holds at `epoch`: a
   * cluster node writes its instances' snapshots for the coordinator. The writes are fenced as
   * the holder's are: once a newer epoch exists they fail with `FencedError`. Replaces the
   * epoch followed before; the store's own lease, if it holds one, takes precedence.
   */
  async followLease(job: string, epoch: number, options?: LeaseOptions): Promise<void> {
    assertJobName(job)
    const timing = resolveLeaseOptions(options, 'lease', this.#options.lease)
    await this.#followers.get(job)?.release()
    const follower: HeldLease = new HeldLease(
      job,
      epoch,
      thisHolder(timing),
      timing,
      async () => (await this.#session(false, (c) => currentEpoch(c, this.#schema, job))) === epoch,
      async () => {
        if (this.#followers.get(job) === follower) this.#followers.delete(job)
      },
    )
    this.#followers.set(job, follower)
  }

  async acquireLease(job: string, options?: LeaseOptions): Promise<JobLease> {
    assertJobName(job)
    const timing = resolveLeaseOptions(options, 'lease', this.#options.lease)
    if (this.#options.readOnly) throw new ReadOnlyStoreError(this.description, `take the lease of job '${job}'`)
    const held = this.#leases.get(job)
    if (held?.usable === true) throw new JobAlreadyRunningError(job, held)
    const holder = thisHolder(timing)
    const epoch = await takeWhenFree(() => this.#session(true, (c) => takeLease(c, this.#schema, job, holder, timing.takeover)), timing.onWait)
    const lease: HeldLease = new HeldLease(
      job,
      epoch,
      holder,
      timing,
      () => this.#session(false, (c) => renewLease(c, this.#schema, job, epoch)),
      async () => {
        if (this.#leases.get(job) === lease) this.#leases.delete(job)
        await this.#session(false, (c) => releaseLease(c, this.#schema, job, epoch))
      },
    )
    this.#leases.set(job, lease)
    void lease.lost.then(() => {
      if (this.#leases.get(job) === lease) this.#leases.delete(job)
    })
    return lease
  }

  async nextSnapshotId(job: string): Promise<number> {
    assertJobName(job)
    if (this.#absent) return 1
    const { rows } = await this.#session(false, (c) =>
      c.query<{ highest: number }>(
        `SELECT greatest(
           (SELECT last_snapshot_id FROM ${this.#schema}.jobs WHERE name = $1),
           (SELECT max(id) FROM ${this.#schema}.snapshots WHERE job = $1),
           0)::float8 AS highest`,
        [job],
      ),
    )
    return (rows[0]?.highest ?? 0) + 1
  }

  async beginSnapshot(begin: BeginSnapshot): Promise<void> {
    assertBegin(begin)
    const { job, id } = begin
    await this.#fenced(job, 'begin a snapshot', async (c) => {
      // The high-water mark keeps ids unique for good: a discarded id is never handed out again.
      await c.query(
        `INSERT INTO ${this.#schema}.jobs (name, last_snapshot_id) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET last_snapshot_id = greatest(jobs.last_snapshot_id, excluded.last_snapshot_id)`,
        [job, id],
      )
      const inserted = await c.query(
        `INSERT INTO ${this.#schema}.snapshots (job, id, kind, status, attempt, layout, triggered_at)
         VALUES ($1, $2, $3, 'pending', $4, $5::jsonb, to_timestamp($6::float8 / 1000))
         ON CONFLICT (job, id) DO NOTHING`,
        [job, id, begin.kind, begin.attempt, JSON.stringify(begin.layout), begin.triggeredAt],
      )
      if (inserted.rowCount === 0) {
        throw new SnapshotStateError(job, id, await this.#status(c, job, id, ''), 'begin')
      }
    })
  }

  async writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number> {
    assertSnapshotRef(job, id)
    assertChunks(job, id, chunks)
    return this.#fenced(job, 'write chunks', async (c) => {
      // FOR SHARE lets the writers of one snapshot run side by side while holding off
      // completeSnapshot and abortSnapshot until their chunks are committed.
      const status = await this.#status(c, job, id, 'FOR SHARE')
      if (status !== 'pending') throw new SnapshotStateError(job, id, status, 'write chunks to')
      if (chunks.length === 0) return 0
      // Several statements of about STATEMENT_BYTES each, in the one transaction. Each chunk's
      // data is its own Buffer parameter, which node-postgres sends as binary; a bytea[] array
      // would be turned into one hex string on the event loop, stalling the records meanwhile.
      for (const slice of slicesBySize(chunks, STATEMENT_BYTES)) {
        const params: unknown[] = [job, id]
        const values = slice.map((k) => {
          const sum = chunkChecksum(k, k.format, checksum(k.data))
          const n = params.push(k.operatorUid, k.kind, k.index, k.format, sum, Buffer.from(k.data.buffer, k.data.byteOffset, k.data.byteLength))
          return `($1, $2, $${n - 5}, $${n - 4}, $${n - 3}::int, $${n - 2}::int, $${n - 1}, 'chunk', $${n}::bytea)`
        })
        const { rows } = await c.query<{ operator_uid: string; kind: ChunkKind; idx: number }>(
          `INSERT INTO ${this.#schema}.state_chunks (job, snapshot_id, operator_uid, kind, idx, format, checksum, checksum_scope, data)
           VALUES ${values.join(', ')}
           ON CONFLICT DO NOTHING
           RETURNING operator_uid, kind, idx`,
          params,
        )
        if (rows.length !== slice.length) {
          const written = new Set(rows.map((r) => addressKey({ operatorUid: r.operator_uid, kind: r.kind, index: r.idx })))
          const repeated = slice.find((k) => !written.has(addressKey(k)))
          if (repeated !== undefined) {
            throw new DuplicateChunkError({ job, snapshotId: id, operatorUid: repeated.operatorUid, kind: repeated.kind, index: repeated.index })
          }
        }
      }
      return dataBytes(chunks)
    })
  }

  async completeSnapshot(job: string, id: number, complete: CompleteSnapshot): Promise<SnapshotInfo> {
    assertSnapshotRef(job, id)
    assertComplete(complete)
    return this.#fenced(job, 'complete a snapshot', async (c) => {
      // FOR UPDATE waits for in-flight writers; the UPDATE below then runs with a fresh snapshot
      // (read committed) and so counts their chunks in size_bytes.
      const status = await this.#status(c, job, id, 'FOR UPDATE')
      if (status !== 'pending') throw new SnapshotStateError(job, id, status, 'complete')
      const layout = await c.query<{ layout: SnapshotLayout }>(`SELECT layout FROM ${this.#schema}.snapshots WHERE job = $1 AND id = $2`, [job, id])
      const manifest = buildManifest(job, id, layout.rows[0]!.layout, await this.#inventory(c, job, id))
      await c.query(`INSERT INTO ${this.#schema}.snapshot_manifests (job, snapshot_id, manifest, checksum) VALUES ($1, $2, $3, $4)`, [
        job,
        id,
        manifest.text,
        manifest.checksum,
      ])
      const { rows } = await c.query<SnapshotRow>(
        `UPDATE ${this.#schema}.snapshots SET
           status = 'completed',
           completed_at = to_timestamp($3::float8 / 1000),
           duration_ms = $4,
           size_bytes = (SELECT coalesce(sum(octet_length(data)), 0) FROM ${this.#schema}.state_chunks
                         WHERE job = $1 AND snapshot_id = $2)
         WHERE job = $1 AND id = $2 AND status = 'pending'
         RETURNING ${SNAPSHOT_COLUMNS}`,
        [job, id, complete.completedAt, complete.durationMs],
      )
      const row = rows[0]
      if (row === undefined) throw new SnapshotStateError(job, id, await this.#status(c, job, id, ''), 'complete')
      return toInfo(row)
    })
  }

  async abortSnapshot(job: string, id: number, reason: string): Promise<void> {
    assertSnapshotRef(job, id)
    await this.#fenced(job, 'abort a snapshot', async (c) => {
      const status = await this.#status(c, job, id, 'FOR UPDATE')
      if (status === 'aborted') return
      if (status !== 'pending') throw new SnapshotStateError(job, id, status, 'abort')
      await c.query(`UPDATE ${this.#schema}.snapshots SET status = 'aborted', reason = $3 WHERE job = $1 AND id = $2`, [
        job,
        id,
        String(reason),
      ])
      await c.query(`DELETE FROM ${this.#schema}.state_chunks WHERE job = $1 AND snapshot_id = $2`, [job, id])
    })
  }

  async getSnapshot(job: string, id: number): Promise<SnapshotInfo | undefined> {
    assertSnapshotRef(job, id)
    if (this.#absent) return undefined
    const { rows } = await this.#session(false, (c) =>
      c.query<SnapshotRow>(`SELECT ${SNAPSHOT_COLUMNS} FROM ${this.#schema}.snapshots WHERE job = $1 AND id = $2`, [job, id]),
    )
    return rows[0] === undefined ? undefined : toInfo(rows[0])
  }

  async listSnapshots(job: string): Promise<SnapshotInfo[]> {
    assertJobName(job)
    if (this.#absent) return []
    const { rows } = await this.#session(false, (c) =>
      c.query<SnapshotRow>(`SELECT ${SNAPSHOT_COLUMNS} FROM ${this.#schema}.snapshots WHERE job = $1 ORDER BY id`, [job]),
    )
    return rows.map(toInfo)
  }

  async latestCompleted(job: string): Promise<SnapshotInfo | undefined> {
    assertJobName(job)
    if (this.#absent) return undefined
    const { rows } = await this.#session(false, (c) =>
      c.query<SnapshotRow>(
        `SELECT ${SNAPSHOT_COLUMNS} FROM ${this.#schema}.snapshots
         WHERE job = $1 AND status = 'completed' ORDER BY id DESC LIMIT 1`,
        [job],
      ),
    )
    return rows[0] === undefined ? undefined : toInfo(rows[0])
  }

  async verifySnapshot(job: string, id: number): Promise<SnapshotInfo> {
    assertSnapshotRef(job, id)
    return this.#session(true, async (c) => {
      // One database snapshot for the row, the manifest and the chunks.
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const { rows } = await c.query<SnapshotRow & { manifest: string | null; manifest_checksum: string | null }>(
        `SELECT ${SNAPSHOT_COLUMNS},
           (SELECT manifest FROM ${this.#schema}.snapshot_manifests WHERE job = $1 AND snapshot_id = $2) AS manifest,
           (SELECT checksum FROM ${this.#schema}.snapshot_manifests WHERE job = $1 AND snapshot_id = $2) AS manifest_checksum
         FROM ${this.#schema}.snapshots WHERE job = $1 AND id = $2`,
        [job, id],
      )
      const row = rows[0]
      if (row?.status !== 'completed') throw new SnapshotStateError(job, id, row?.status, 'verify')
      const stored = row.manifest === null || row.manifest_checksum === null ? undefined : { text: row.manifest, checksum: row.manifest_checksum }
      verifyManifest(job, id, stored, await this.#inventory(c, job, id))
      return toInfo(row)
    })
  }

  async readChunks(job: string, id: number, filter?: ChunkFilter): Promise<StateChunk[]> {
    assertSnapshotRef(job, id)
    assertFilter(filter)
    if (this.#absent) throw new SnapshotStateError(job, id, undefined, 'read chunks of')
    // One statement, so the status and the chunks come from the same database snapshot.
    const { rows } = await this.#session(false, (c) =>
      c.query<ChunkRow>(
        `SELECT s.status, c.operator_uid, c.kind, c.idx, c.format, c.checksum, c.checksum_scope, c.data
         FROM ${this.#schema}.snapshots s
         LEFT JOIN ${this.#schema}.state_chunks c
           ON c.job = s.job AND c.snapshot_id = s.id
           AND ($3::text IS NULL OR c.operator_uid = $3)
           AND ($4::text IS NULL OR c.kind = $4)
           AND ($5::int[] IS NULL OR c.idx = ANY ($5))
         WHERE s.job = $1 AND s.id = $2`,
        [job, id, filter?.operatorUid ?? null, filter?.kind ?? null, filter?.indexes ?? null],
      ),
    )
    const status = rows[0]?.status
    if (status !== 'completed') throw new SnapshotStateError(job, id, status, 'read chunks of')
    const chunks: StateChunk[] = []
    for (const row of rows) {
      if (row.operator_uid === null) continue
      const dataChecksum = checksum(row.data)
      const address = { operatorUid: row.operator_uid, kind: row.kind, index: row.idx }
      if ((row.checksum_scope === 'chunk' ? chunkChecksum(address, row.format, dataChecksum) : dataChecksum) !== row.checksum) {
        throw new CorruptChunkError(
          { job, snapshotId: id, operatorUid: row.operator_uid, kind: row.kind, index: row.idx },
          'the data does not match its checksum',
        )
      }
      chunks.push({
        operatorUid: row.operator_uid,
        kind: row.kind,
        index: row.idx,
        format: row.format,
        data: new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength),
      })
    }
    return chunks.sort(compareAddresses)
  }

  async discardSnapshot(job: string, id: number): Promise<void> {
    assertSnapshotRef(job, id)
    await this.#fenced(job, 'discard a snapshot', async (c) => {
      await c.query(`DELETE FROM ${this.#schema}.snapshots WHERE job = $1 AND id = $2`, [job, id])
    })
  }

  async #open(): Promise<void> {
    const o = this.#options
    // Every wait has an end (section 8): connecting (connectionTimeoutMillis), a statement on the
    // server (statement_timeout), a session of ours stuck in a transaction (idle in transaction),
    // a peer that vanished (keep-alive), and a server that stops answering altogether: the
    // queryTimeoutMs deadline of #session. pg's own query_timeout is not used: its error carries
    // no code to classify it by, and it leaves the connection in the pool.
    const pool = new pg.Pool({
      connectionString: withFallbackUser(o.connectionString),
      max: o.poolSize,
      connectionTimeoutMillis: o.connectTimeoutMs,
      statement_timeout: o.statementTimeoutMs,
      idle_in_transaction_session_timeout: o.idleInTransactionTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: o.keepAliveDelayMs,
      application_name: 'weir',
    })
    // Without a listener an idle connection dropped by the server would crash the process. The
    // pool has already discarded that connection, and the next query fails or reconnects.
    pool.on('error', () => undefined)
    this.#pool = pool
    if (this.#options.readOnly) await this.#checkSchema()
    else await this.#migrate()
  }

  /** Read-only open: no schema is created; a missing one reads as empty, a newer one is refused. */
  async #checkSchema(): Promise<void> {
    const found = await this.#session(false, (c) =>
      c.query<{ has_table: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS has_table`, [`${this.#schema}.schema_migrations`]),
    )
    this.#absent = found.rows[0]?.has_table !== true
    if (this.#absent) return
    const { rows } = await this.#session(false, (c) =>
      c.query<{ version: number }>(`SELECT coalesce(max(version), 0) AS version FROM ${this.#schema}.schema_migrations`),
    )
    const current = rows[0]?.version ?? 0
    if (current > latestSchemaVersion) {
      throw new StoreSchemaError(`${this.#options.target} schema ${this.#options.schema}`, current, latestSchemaVersion)
    }
    // A schema open() never finished creating has no snapshots table yet.
    this.#absent = current === 0
  }

  /** The lease this instance holds on `job`, if it may still be used; throws `FencedError` if not. */
  #lease(job: string, operation: string): HeldLease {
    const lease = this.#leases.get(job) ?? this.#followers.get(job)
    if (lease === undefined) throw new FencedError(job, undefined, undefined, operation)
    if (!lease.usable) throw lease.fenced(operation)
    return lease
  }

  /**
   * Runs a mutation of `job`'s snapshots in a transaction that starts with the fencing check. If
   * it fails anyhow (most often the connection lost meanwhile), a fresh session asks whether the
   * lease is still ours: a holder stopped past its expiry has its session ended by the server
   * (postgres-lease.ts), and what it must learn then is `FencedError`, not an outage to retry or
   * the error of a statement cut short. If the store cannot answer, the mutation's error stands.
   */
  async #fenced<T>(job: string, operation: string, fn: (c: Statements) => Promise<T>): Promise<T> {
    const lease = this.#lease(job, operation)
    try {
      return await this.#session(true, async (c) => {
        await this.#fence(c, job, operation, lease)
        return fn(c)
      })
    } catch (err) {
      if (err instanceof FencedError) throw err
      const current = await this.#session(false, (c) => currentEpoch(c, this.#schema, job)).catch(() => lease.epoch)
      if (current !== lease.epoch) throw lease.markLost(operation, current)
      throw err
    }
  }

  /**
   * The first step of every mutation's transaction: locks the job's lease row and checks that
   * this instance holds its current epoch (postgres-lease.ts says why that fences).
   */
  async #fence(c: Statements, job: string, operation: string, lease = this.#lease(job, operation)): Promise<void> {
    const current = await lockEpoch(c, this.#schema, job, lease.expiryMs)
    if (current !== lease.epoch) throw lease.markLost(operation, current)
  }

  /**
   * Applies pending migrations one transaction each. The advisory lock makes concurrent opens
   * (several processes starting at once) take turns; whoever comes second finds nothing to do.
   */
  async #migrate(): Promise<void> {
    for (;;) {
      const done = await this.#session(true, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`weir.migrate.${this.#options.schema}`])
        // Looked up first: CREATE ... IF NOT EXISTS would still need the CREATE privilege.
        const found = await c.query<{ has_schema: boolean; has_table: boolean }>(
          `SELECT to_regnamespace($1) IS NOT NULL AS has_schema, to_regclass($2) IS NOT NULL AS has_table`,
          [this.#schema, `${this.#schema}.schema_migrations`],
        )
        if (found.rows[0]?.has_schema !== true) await c.query(`CREATE SCHEMA ${this.#schema}`)
        if (found.rows[0]?.has_table !== true) {
          await c.query(
            `CREATE TABLE ${this.#schema}.schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())`,
          )
        }
        const { rows } = await c.query<{ version: number }>(
          `SELECT coalesce(max(version), 0) AS version FROM ${this.#schema}.schema_migrations`,
        )
        const current = rows[0]?.version ?? 0
        if (current > latestSchemaVersion) {
          throw new StoreSchemaError(`${this.#options.target} schema ${this.#options.schema}`, current, latestSchemaVersion)
        }
        const next = migrations.find((m) => m.version > current)
        if (next === undefined) return true
        await c.query(`SET LOCAL search_path TO ${this.#schema}`)
        await c.query(next.sql)
        await c.query(`INSERT INTO ${this.#schema}.schema_migrations (version, name) VALUES ($1, $2)`, [next.version, next.name])
        return false
      })
      if (done) return
    }
  }

  /** Every chunk of a snapshot as a manifest lists it, without reading the data. */
  async #inventory(c: Statements, job: string, id: number): Promise<ManifestEntry[]> {
    const { rows } = await c.query<InventoryRow>(
      `SELECT operator_uid, kind, idx, format, octet_length(data)::float8 AS size, checksum
       FROM ${this.#schema}.state_chunks WHERE job = $1 AND snapshot_id = $2`,
      [job, id],
    )
    return rows.map((r) => ({ operatorUid: r.operator_uid, kind: r.kind, index: r.idx, format: r.format, size: r.size, checksum: r.checksum }))
  }

  async #status(c: Statements, job: string, id: number, lock: '' | 'FOR SHARE' | 'FOR UPDATE'): Promise<SnapshotStatus | undefined> {
    const { rows } = await c.query<{ status: SnapshotStatus }>(
      `SELECT status FROM ${this.#schema}.snapshots WHERE job = $1 AND id = $2 ${lock}`,
      [job, id],
    )
    return rows[0]?.status
  }

  /**
   * Runs `fn` on a pooled connection, in a transaction if asked. Connection failures become
   * `StoreUnavailableError`; a connection that failed is destroyed, not returned to the pool.
   * Each statement must be answered within `queryTimeoutMs`, or the connection is dropped and
   * the call fails with `StoreUnavailableError`: a frozen server cannot hold a caller for ever.
   */
  async #session<T>(transaction: boolean, fn: (db: Statements) => Promise<T>): Promise<T> {
    const pool = this.#pool
    if (pool === undefined) throw new Error(`${this.description} is not open: call open() first`)
    let client: PoolClient
    try {
      client = await pool.connect()
    } catch (err) {
      throw this.#unavailable(err, 'cannot connect')
    }
    // A checked-out client reports a dropped socket only as an 'error' event; noting it here both
    // keeps it from crashing the process and lets the failed query be classified by it.
    let lost: unknown
    const onError = (err: unknown): void => {
      lost = err
    }
    client.on('error', onError)
    let timedOut = false
    const { queryTimeoutMs } = this.#options
    const db: Statements = {
      query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) =>
        new Promise<pg.QueryResult<R>>((resolve, reject) => {
          const answer = client.query<R>(text, values)
          const timer = setTimeout(() => {
            timedOut = true
            // Destroying the socket fails the statement in flight, which nobody awaits any more.
            answer.catch(() => undefined)
            ;(client as unknown as pg.Client).connection.stream.destroy()
            reject(this.#unavailable(undefined, `no answer to a statement within queryTimeoutMs (${queryTimeoutMs} ms)`))
          }, queryTimeoutMs)
          answer.then(
            (result) => {
              clearTimeout(timer)
              resolve(result)
            },
            (err: unknown) => {
              clearTimeout(timer)
              reject(err)
            },
          )
        }),
    }
    let destroy = false
    try {
      if (!transaction) return await fn(db)
      await db.query('BEGIN')
      try {
        const result = await fn(db)
        await db.query('COMMIT')
        return result
      } catch (err) {
        // The first error is the one to report; a failed rollback only means the connection is
        // unusable, so it is destroyed below instead of reused.
        if (!timedOut) {
          await db.query('ROLLBACK').catch(() => {
            destroy = true
          })
        }
        throw err
      }
    } catch (err) {
      if (timedOut) {
        destroy = true
        throw err
      }
      if (lost !== undefined || isConnectionFailure(err)) {
        destroy = true
        throw this.#unavailable(lost ?? err, 'lost the connection')
      }
      if (errorCode(err) === QUERY_CANCELED) {
        throw this.#unavailable(err, `a statement ran past statementTimeoutMs (${this.#options.statementTimeoutMs} ms)`)
      }
      throw err
    } finally {
      client.off('error', onError)
      client.release(destroy)
    }
  }

  #unavailable(err: unknown, problem: string): StoreUnavailableError {
    const code = errorCode(err)
    const check =
      code === '28P01' || code === '28000'
        ? 'check the user and password of the connection string'
        : code === '3D000'
          ? 'check that the database exists'
          : code === QUERY_CANCELED || err === undefined
            ? `check that Postgres at ${this.#options.target} is running and not overloaded or stopped; the call may be retried`
            : `check that Postgres is running and accepts connections at ${this.#options.target}`
    return new StoreUnavailableError(this.#options.target, code === undefined ? problem : `${problem} (${code})`, check, { cause: err })
  }

  async #endPool(): Promise<void> {
    const pool = this.#pool
    this.#pool = undefined
    if (pool !== undefined) await pool.end()
  }
}

const SNAPSHOT_COLUMNS = `job, id::float8 AS id, kind, status, attempt, layout,
  (extract(epoch FROM triggered_at) * 1000)::float8 AS triggered_at,
  (extract(epoch FROM completed_at) * 1000)::float8 AS completed_at,
  size_bytes::float8 AS size_bytes, duration_ms, reason`

function toInfo(row: SnapshotRow): SnapshotInfo {
  const info: SnapshotInfo = {
    job: row.job,
    id: row.id,
    kind: row.kind,
    status: row.status,
    attempt: row.attempt,
    layout: row.layout,
    // timestamptz keeps microseconds, so rounding recovers the exact milliseconds written.
    triggeredAt: Math.round(row.triggered_at),
  }
  if (row.completed_at !== null) info.completedAt = Math.round(row.completed_at)
  if (row.size_bytes !== null) info.sizeBytes = row.size_bytes
  if (row.duration_ms !== null) info.durationMs = row.duration_ms
  if (row.reason !== null) info.reason = row.reason
  return info
}

/**
 * libpq (psql) falls back to the operating system's user name; node-postgres reads only `$USER`,
 * which containers and service managers often leave unset, and then fails with "no user name".
 * A user in the URL, `$PGUSER` or `$USER` still wins.
 */
export function withFallbackUser(connectionString: string): string {
  if (pg.defaults.user !== undefined || process.env['PGUSER'] !== undefined) return connectionString
  let url: URL
  try {
    url = new URL(connectionString)
    if (url.username !== '') return connectionString
    url.username = encodeURIComponent(userInfo().username)
  } catch {
    // Not a URL, or no passwd entry for this uid: node-postgres will report what is missing.
    return connectionString
  }
  return url.toString()
}

function isConnectionFailure(err: unknown): boolean {
  const code = errorCode(err)
  return code !== undefined && (code.startsWith('08') || CONNECTION_FAILURES.has(code))
}

/** Chunk bytes per INSERT statement of `writeChunks`. */
const STATEMENT_BYTES = 256 * 1024

/** Chunks per INSERT statement at most: 6 parameters each, under Postgres's 65535. */
const STATEMENT_ROWS = 5000

/** Splits chunks into consecutive runs of about `limit` bytes and at most STATEMENT_ROWS chunks. */
function slicesBySize(chunks: readonly StateChunk[], limit: number): StateChunk[][] {
  const out: StateChunk[][] = []
  let current: StateChunk[] = []
  let size = 0
  for (const c of chunks) {
    if (current.length > 0 && (size + c.data.length > limit || current.length === STATEMENT_ROWS)) {
      out.push(current)
      current = []
      size = 0
    }
    current.push(c)
    size += c.data.length
  }
  if (current.length > 0) out.push(current)
  return out
}
