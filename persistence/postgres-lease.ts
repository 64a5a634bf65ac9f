/**
 * The Postgres store's job lease (docs/architecture.md section 8): a row per job in `job_leases`
 * with the owner, its host and pid, the fencing epoch and a heartbeat. Times are the database's
 * own clock, so runners on hosts whose clocks disagree still agree on expiry.
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
import { JobAlreadyRunningError, type LeaseHolderInfo } from './errors.ts'
import { deadOnThisHost } from './lease.ts'

/** What lease statements run on: a connection of the store, each statement under its deadline. */
export interface Statements {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>
}

interface LeaseRow {
  epoch: number
  owner: string
  host: string
  pid: number
  since: number
  expired: boolean
}

/**
 * Takes the job's lease in the caller's transaction and returns the new epoch. Throws
 * `JobAlreadyRunningError` if the holder's heartbeat is within its expiry and its process is not
 * known to be dead.
 */
export async function takeLease(c: Statements, schema: string, job: string, holder: LeaseHolderInfo, expiryMs: number): Promise<number> {
  const inserted = await c.query<{ epoch: number }>(
    `INSERT INTO ${schema}.job_leases (job, epoch, owner, host, pid, since, heartbeat_at, expiry_ms)
     VALUES ($1, 1, $2, $3, $4, to_timestamp($5::float8 / 1000), clock_timestamp(), $6)
     ON CONFLICT (job) DO NOTHING
     RETURNING epoch::float8 AS epoch`,
    [job, holder.owner, holder.host, holder.pid, holder.since, expiryMs],
  )
  if (inserted.rows[0] !== undefined) return inserted.rows[0].epoch
  // Looked at without a lock first: a live holder may be inside a write that holds the row, and
  // the answer must come at once. Only a takeover waits for the row (and so for the old holder's
  // last transaction to end; see above for why that wait is bounded).
  const seen = await readLease(c, schema, job, '')
  refuseIfAlive(job, seen)
  await c.query(`SELECT set_config('lock_timeout', $1, true)`, [String(2 * seen.expiryMs + 5000)])
  refuseIfAlive(job, await readLease(c, schema, job, 'FOR UPDATE'))
  const updated = await c.query<{ epoch: number }>(
    `UPDATE ${schema}.job_leases SET epoch = epoch + 1, owner = $2, host = $3, pid = $4,
       since = to_timestamp($5::float8 / 1000), heartbeat_at = clock_timestamp(), expiry_ms = $6
     WHERE job = $1 RETURNING epoch::float8 AS epoch`,
    [job, holder.owner, holder.host, holder.pid, holder.since, expiryMs],
  )
  return updated.rows[0]!.epoch
}

interface SeenLease extends LeaseRow {
  expiryMs: number
}

async function readLease(c: Statements, schema: string, job: string, lock: '' | 'FOR UPDATE'): Promise<SeenLease> {
  const { rows } = await c.query<SeenLease>(
    `SELECT epoch::float8 AS epoch, owner, host, pid, (extract(epoch FROM since) * 1000)::float8 AS since,
       expiry_ms AS "expiryMs", clock_timestamp() - heartbeat_at > expiry_ms * interval '1 millisecond' AS expired
     FROM ${schema}.job_leases WHERE job = $1 ${lock}`,
    [job],
  )
  return rows[0]!
}

function refuseIfAlive(job: string, current: SeenLease): void {
  if (!current.expired && !deadOnThisHost(current)) {
    throw new JobAlreadyRunningError(job, { owner: current.owner, host: current.host, pid: current.pid, since: Math.round(current.since) })
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
