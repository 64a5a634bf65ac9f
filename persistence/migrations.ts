/**
 * The Postgres store's schema, as an ordered list of migrations (docs/architecture.md section 8). Each runs
 * in its own transaction with `search_path` set to the store's schema, so the SQL names tables
 * without a schema. Never edit a released migration: append a new one.
 */
export interface Migration {
  /** Consecutive from 1. */
  version: number
  name: string
  sql: string
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs, snapshots and state chunks',
    sql: `
      CREATE TABLE jobs (
        name text PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        -- The highest snapshot id ever begun: ids are never reused, even after a discard.
        last_snapshot_id bigint NOT NULL DEFAULT 0
      );

      CREATE TABLE snapshots (
        job text NOT NULL REFERENCES jobs (name) ON DELETE CASCADE,
        id bigint NOT NULL CHECK (id >= 0),
        kind text NOT NULL CHECK (kind IN ('checkpoint', 'savepoint')),
        status text NOT NULL CHECK (status IN ('pending', 'completed', 'aborted')),
        attempt integer NOT NULL CHECK (attempt >= 0),
        layout jsonb NOT NULL,
        triggered_at timestamptz NOT NULL,
        completed_at timestamptz,
        size_bytes bigint,
        duration_ms double precision,
        reason text,
        PRIMARY KEY (job, id)
      );

      CREATE TABLE state_chunks (
        job text NOT NULL,
        snapshot_id bigint NOT NULL,
        operator_uid text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('keyed', 'operator', 'timers', 'channel')),
        idx integer NOT NULL CHECK (idx >= 0),
        format integer NOT NULL,
        checksum text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (job, snapshot_id, operator_uid, kind, idx),
        FOREIGN KEY (job, snapshot_id) REFERENCES snapshots (job, id) ON DELETE CASCADE
      );
    `,
  },
  {
    version: 2,
    name: 'job leases',
    sql: `
      -- One row per job that ever ran: who owns the job's snapshots now, and the fencing epoch,
      -- which only grows. Kept after a release so an epoch is never handed out twice.
      CREATE TABLE job_leases (
        job text PRIMARY KEY,
        epoch bigint NOT NULL CHECK (epoch > 0),
        owner text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        since timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expiry_ms integer NOT NULL CHECK (expiry_ms > 0)
      );
    `,
  },
  {
    version: 3,
    name: 'snapshot manifests; chunk checksums that cover the address',
    sql: `
      -- Chunks written from now on carry a checksum of their address, format and data
      -- ('chunk'); those written before cover the data alone ('data') and stay readable.
      ALTER TABLE state_chunks
        ADD COLUMN checksum_scope text NOT NULL DEFAULT 'data' CHECK (checksum_scope IN ('data', 'chunk'));
      ALTER TABLE state_chunks ALTER COLUMN checksum_scope SET DEFAULT 'chunk';

      -- Written in the transaction that completes the snapshot: every chunk it holds, checksummed.
      -- A completed snapshot without one (completed before this migration) is never restored.
      CREATE TABLE snapshot_manifests (
        job text NOT NULL,
        snapshot_id bigint NOT NULL,
        manifest text NOT NULL,
        checksum text NOT NULL,
        PRIMARY KEY (job, snapshot_id),
        FOREIGN KEY (job, snapshot_id) REFERENCES snapshots (job, id) ON DELETE CASCADE
      );
    `,
  },
  {
    version: 4,
    name: 'lease holders: process start and heartbeat interval',
    sql: `
      -- Lets another runner tell a holder that is gone from one that is silent: the start time of
      -- the holder's process (clock ticks since boot, /proc/<pid>/stat) tells a pid reused by
      -- another process, and the heartbeat interval tells a stopped heartbeat from a late one.
      -- NULL for leases taken before.
      ALTER TABLE job_leases
        ADD COLUMN process_start bigint CHECK (process_start >= 0),
        ADD COLUMN heartbeat_ms integer CHECK (heartbeat_ms > 0);
    `,
  },
]

/** The newest schema version this code knows. */
export const latestSchemaVersion: number = migrations.at(-1)?.version ?? 0
