/**
 * The Postgres store's job lease (docs/architecture.md section 8): a row per job in `job_leases`
 * with the owner, its host, pid and process start, the fencing epoch, a heartbeat and its
 * interval. Times are the database's own clock, so runners on hosts whose clocks disagree still
 * agree on expiry.
 *
 * Every mutation of a job's snapshots first locks the lease row `FOR KEY SHARE` and compares the
 * epoch, in the mutation's transaction. A takeover locks the row `FOR UPDATE`, which waits for
 * those transactions to end, so no mutation of an old owner commits after a new owner's epoch is
 * taken. Heartbeats update a non-key column only, which `FOR KEY SHARE` lets through, so they
 * never wait for a long write.
 *
 * A holder stopped in the middle of a transaction (SIGSTOP, a frozen VM) would hold its row lock
 * for ever, and the takeover would wait for ever. So each mutation's transaction sets
 * `idle_in_transaction_session_timeout` to the lease expiry: the server ends such a session, and
 * rolls its transaction back, once it has waited that long for its client.
 */
import type pg from 'pg'
import type { RecordedHolder } from './lease.ts'
import { judgeHolder, type SeenLease, type Waiting } from './lease-takeover.ts'
import type { LeaseTakeover } from './store.ts'

/** What lease statements run on: a connection of the store, each statement under its deadline. */
export interface Statements {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>
}

/**
 * Takes the job's lease in the caller's transaction and returns the new epoch, or the holder to
 * wait for (lease-takeover.ts decides; the caller waits outside the transaction). Throws
 * `JobAlreadyRunningError` if the holder is alive.
 */
export async function takeLease(c: Statements, schema: string, job: string, holder: RecordedHolder, policy: LeaseTakeover): Promise<number | Waiting> {
  const values = [job, holder.owner, holder.host, holder.pid, holder.since, holder.expiryMs, holder.processStart ?? null, holder.heartbeatMs]
  const inserted = await c.query<{ epoch: number }>(
    `INSERT INTO ${schema}.job_leases (job, epoch, owner, host, pid, since, heartbeat_at, expiry_ms, process_start, heartbeat_ms)
     VALUES ($1, 1, $2, $3, $4, to_timestamp($5::float8 / 1000), clock_timestamp(), $6, $7, $8)
     ON CONFLICT (job) DO NOTHING
     RETURNING epoch::float8 AS epoch`,
    values,
  )
  if (inserted.rows[0] !== undefined) return inserted.rows[0].epoch
  // Looked at without a lock first: a live holder may be inside a write that holds the row, and
  // the answer must come at once. Only a takeover waits for the row (and so for the old holder's
  // last transaction to end; see above for why that wait is bounded).
  const seen = await readLease(c, schema, job, '')
  const first = judgeHolder(job, seen, policy)
  if (first !== 'take') return first
  await c.query(`SELECT set_config('lock_timeout', $1, true)`, [String(2 * seen.holder.expiryMs + 5000)])
  const locked = judgeHolder(job, await readLease(c, schema, job, 'FOR UPDATE'), policy)
  if (locked !== 'take') return locked
  const updated = await c.query<{ epoch: number }>(
    `UPDATE ${schema}.job_leases SET epoch = epoch + 1, owner = $2, host = $3, pid = $4,
       since = to_timestamp($5::float8 / 1000), heartbeat_at = clock_timestamp(), expiry_ms = $6, process_start = $7, heartbeat_ms = $8
     WHERE job = $1 RETURNING epoch::float8 AS epoch`,
    values,
  )
  return updated.rows[0]!.epoch
}

interface LeaseRow {
  owner: string
  host: string
  pid: number
  since: number
  processStart: number | null
  expiryMs: number
  heartbeatMs: number | null
  sinceHeartbeatMs: number
}

async function readLease(c: Statements, schema: string, job: string, lock: '' | 'FOR UPDATE'): Promise<SeenLease> {
  const { rows } = await c.query<LeaseRow>(
    `SELECT owner, host, pid, (extract(epoch FROM since) * 1000)::float8 AS since, process_start::float8 AS "processStart",
       expiry_ms AS "expiryMs", heartbeat_ms AS "heartbeatMs",
       (extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000)::float8 AS "sinceHeartbeatMs"
     FROM ${schema}.job_leases WHERE job = $1 ${lock}`,
    [job],
  )
  const row = rows[0]!
  return {
    holder: { owner: row.owner, host: row.host, pid: row.pid, since: row.since, processStart: row.processStart ?? undefined, expiryMs: row.expiryMs, heartbeatMs: row.heartbeatMs ?? undefined },
    sinceHeartbeatMs: row.sinceHeartbeatMs,
  }
}

/** The heartbeat: true if `epoch` is still the job's epoch (and the heartbeat renewed). */
export async function renewLease(c: Statements, schema: string, job: string, epoch: number): Promise<boolean> {
  const { rowCount } = await c.query(`UPDATE ${schema}.job_leases SET heartbeat_at = clock_timestamp() WHERE job = $1 AND epoch = $2`, [job, epoch])
  return rowCount === 1
}

/** Lets the next runner take the lease at once: its heartbeat is set to the distant past. */
export async function releaseLease(c: Statements, schema: string, job: string, epoch: number): Promise<void> {
  await c.query(`UPDATE ${schema}.job_leases SET heartbeat_at = to_timestamp(0) WHERE job = $1 AND epoch = $2`, [job, epoch])
}

/**
 * The job's current epoch, with its lease row locked `FOR KEY SHARE` until the caller's
 * transaction ends; `undefined` if no runner ever took the lease. The same statement bounds how
 * long the transaction may sit waiting for this client (`expiryMs`, see above).
 */
export async function lockEpoch(c: Statements, schema: string, job: string, expiryMs: number): Promise<number | undefined> {
  const { rows } = await c.query<{ epoch: number }>(
    `SELECT epoch::float8 AS epoch, set_config('idle_in_transaction_session_timeout', $2, true)
     FROM ${schema}.job_leases WHERE job = $1 FOR KEY SHARE`,
    [job, String(expiryMs)],
  )
  return rows[0]?.epoch
}

/** The job's current epoch, read without a lock; `undefined` if no runner ever took the lease. */
export async function currentEpoch(c: Statements, schema: string, job: string): Promise<number | undefined> {
  const { rows } = await c.query<{ epoch: number }>(`SELECT epoch::float8 AS epoch FROM ${schema}.job_leases WHERE job = $1`, [job])
  return rows[0]?.epoch
}
