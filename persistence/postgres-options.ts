/** Options of the Postgres store, with their defaults and the checks they get when a store is made. */
import { resolveLeaseOptions, type ResolvedLeaseOptions } from './lease.ts'
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
  readOnly: boolean
  lease: ResolvedLeaseOptions
  /** `host:port/database`, for messages: never the user or password. */
  target: string
}

export function defaultPostgresStoreOptions(): Omit<ResolvedPostgresStoreOptions, 'connectionString' | 'target'> {
  return { schema: 'weir', poolSize: 10, connectTimeoutMs: 10_000, readOnly: false, lease: resolveLeaseOptions(undefined) }
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** Applies defaults and throws a `TypeError` naming the first bad option. */
export function resolvePostgresStoreOptions(options: PostgresStoreOptions): ResolvedPostgresStoreOptions {
  const defaults = defaultPostgresStoreOptions()
  if (typeof options?.connectionString !== 'string' || options.connectionString.trim() === '') {
    throw new TypeError('PostgresStore needs a `connectionString`, e.g. postgres://127.0.0.1:5432/weir')
  }
  const schema = options.schema ?? defaults.schema
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema) || schema.toLowerCase().startsWith('pg_')) {
    throw new TypeError(
      `invalid schema ${JSON.stringify(schema)}: use up to 63 letters, digits or '_', not starting with a digit or 'pg_'`,
    )
  }
  const poolSize = options.poolSize ?? defaults.poolSize
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new TypeError(`poolSize must be a positive integer, got ${String(poolSize)}`)
  }
  const connectTimeoutMs = options.connectTimeoutMs ?? defaults.connectTimeoutMs
  if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 1) {
    throw new TypeError(`connectTimeoutMs must be a positive integer, got ${String(connectTimeoutMs)}`)
  }
  const readOnly = options.readOnly ?? defaults.readOnly
  if (typeof readOnly !== 'boolean') throw new TypeError(`readOnly must be true or false, got ${String(readOnly)}`)
  const lease = resolveLeaseOptions(options.lease)
  return { connectionString: options.connectionString, schema, poolSize, connectTimeoutMs, readOnly, lease, target: describeTarget(options.connectionString) }
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
