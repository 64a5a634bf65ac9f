/** Options of the Postgres store, with their defaults and the checks they get when a store is made. */
import { InvalidOptionError } from './errors.ts'
import { resolveLeaseOptions, type ResolvedLeaseOptions } from './lease.ts'
import { checkBoolean, checkDuration, checkInteger, checkObject, MAX_DURATION_MS, rejectUnknownKeys } from './option-checks.ts'
import type { LeaseOptions } from './store.ts'

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions {
  /** A `postgres://user:password@host:port/database` URL. The password never appears in errors. */
  connectionString: string
  /**
   * The schema that holds Weir's tables; created and migrated by `open()`. Letters, digits and
   * `_`, not starting with a digit or `pg_`.
   * @default 'weir'
   */
  schema?: string
  /**
   * The most connections the store keeps open.
   * @default 10
   */
  poolSize?: number
  /**
   * How long to wait for a new connection before failing with `StoreUnavailableError`.
   * @default 10000
   */
  connectTimeoutMs?: number
  /**
   * The server cancels a statement that runs longer (Postgres `statement_timeout`); the call
   * fails with `StoreUnavailableError` (SQLSTATE 57014).
   * @default 30000
   */
  statementTimeoutMs?: number
  /**
   * The longest this process waits for the answer to one statement, whatever the server does:
   * past it the connection is dropped and the call fails with `StoreUnavailableError`. This is
   * what ends a call to a server that is frozen or cut off without a reset. At least
   * `statementTimeoutMs`, so the server's own cancel comes first.
   * @default statementTimeoutMs + 5000 (35000)
   */
  queryTimeoutMs?: number
  /**
   * The server ends a session of ours left inside a transaction this long (Postgres
   * `idle_in_transaction_session_timeout`), so a frozen Weir process cannot hold snapshot
   * locks for ever. Transactions that check the job's lease use the lease expiry instead, so a
   * frozen owner never delays the next owner's takeover past the expiry.
   * @default 60000
   */
  idleInTransactionTimeoutMs?: number
  /**
   * TCP keep-alive probes start after a connection has been idle this long, so a peer that
   * vanished (a host down, a cable cut) is noticed.
   * @default 10000
   */
  keepAliveDelayMs?: number
  /**
   * Open for reading only (`weir snapshots`, `weir state`): never creates or migrates the
   * schema, opens a missing one as empty, and refuses `acquireLease` (so every mutation).
   * @default false
   */
  readOnly?: boolean
  /** The lease timing `acquireLease` uses when not given its own. */
  lease?: LeaseOptions
}

/** {@link PostgresStoreOptions} with every default applied. */
export interface ResolvedPostgresStoreOptions {
  connectionString: string
  schema: string
  poolSize: number
  connectTimeoutMs: number
  statementTimeoutMs: number
  queryTimeoutMs: number
  idleInTransactionTimeoutMs: number
  keepAliveDelayMs: number
  readOnly: boolean
  lease: ResolvedLeaseOptions
  /** `host:port/database`, for messages: never the user or password. */
  target: string
}

export function defaultPostgresStoreOptions(): Omit<ResolvedPostgresStoreOptions, 'connectionString' | 'target'> {
  return {
    schema: 'weir',
    poolSize: 10,
    connectTimeoutMs: 10_000,
    statementTimeoutMs: 30_000,
    queryTimeoutMs: 35_000,
    idleInTransactionTimeoutMs: 60_000,
    keepAliveDelayMs: 10_000,
    readOnly: false,
    lease: resolveLeaseOptions(undefined),
  }
}

const KEYS = ['connectionString', 'schema', 'poolSize', 'connectTimeoutMs', 'statementTimeoutMs', 'queryTimeoutMs', 'idleInTransactionTimeoutMs', 'keepAliveDelayMs', 'readOnly', 'lease']

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/**
 * Applies defaults and checks every option once, when the store is made.
 * @throws {InvalidOptionError} naming the first bad option (`postgres.<name>`).
 * @throws {UnknownOptionError} for a key that does not exist.
 */
export function resolvePostgresStoreOptions(options: PostgresStoreOptions): ResolvedPostgresStoreOptions {
  const defaults = defaultPostgresStoreOptions()
  const given = checkObject('postgres', options)
  rejectUnknownKeys('postgres', given, KEYS)
  const o = { ...defaults, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) } as Record<string, unknown>
  const connectionString = o['connectionString']
  if (typeof connectionString !== 'string' || connectionString.trim() === '') {
    throw new InvalidOptionError('postgres.connectionString', 'a postgres:// URL, e.g. postgres://127.0.0.1:5432/weir', connectionString)
  }
  const schema = o['schema']
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema) || schema.toLowerCase().startsWith('pg_')) {
    throw new InvalidOptionError('postgres.schema', "up to 63 letters, digits or '_', not starting with a digit or 'pg_'", schema)
  }
  const ms = (name: string, min = 1) => checkDuration(`postgres.${name}`, o[name], { min })
  const statementTimeoutMs = ms('statementTimeoutMs')
  return {
    connectionString,
    schema,
    poolSize: checkInteger('postgres.poolSize', o['poolSize'], 1, 10_000),
    connectTimeoutMs: ms('connectTimeoutMs'),
    statementTimeoutMs,
    // Left out, it follows statementTimeoutMs: a default below the user's own value would be our mistake.
    queryTimeoutMs: given['queryTimeoutMs'] === undefined ? Math.min(statementTimeoutMs + 5000, MAX_DURATION_MS) : ms('queryTimeoutMs', statementTimeoutMs),
    idleInTransactionTimeoutMs: ms('idleInTransactionTimeoutMs'),
    keepAliveDelayMs: ms('keepAliveDelayMs'),
    readOnly: checkBoolean('postgres.readOnly', o['readOnly']),
    lease: resolveLeaseOptions(o['lease'] as LeaseOptions | undefined, 'postgres.lease'),
    target: describeTarget(connectionString),
  }
}

/** `host:port/database` from a connection URL, with the defaults Postgres clients apply. */
function describeTarget(connectionString: string): string {
  let url: URL
  try {
    url = new URL(connectionString)
  } catch {
    return 'postgres (connection string is not a URL)'
  }
  const host = url.searchParams.get('host') ?? (url.hostname === '' ? 'localhost' : url.hostname)
  const port = url.port === '' ? '5432' : url.port
  const database = decodeURIComponent(url.pathname.slice(1))
  return `${host}:${port}/${database === '' ? '(default database)' : database}`
}
